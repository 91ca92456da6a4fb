"""The phantom's settings and the phantom itself: a study with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from ..study import DCEStudy


@dataclass
class PhantomConfig:
    """Every knob of the phantom; ``None`` / ranges are drawn from the seed."""

    size: tuple[int, int, int] = (96, 96, 32)        # voxels (x, y, z)
    spacing: Optional[tuple[float, float, float]] = None  # mm; None: field of view / size
    orientation: str = "random"                       # "axial" | "sagittal" | "random"
    p_sagittal: float = 0.15
    layout: str = "random"                            # "bilateral" | "single" | "random" (sagittal: single)
    p_single: float = 0.2
    n_post: Optional[int] = None                      # 1..7 post-contrast phases
    first_post_s: tuple[float, float] = (60.0, 120.0)
    interval_s: tuple[float, float] = (60.0, 90.0)
    p_unknown_times: float = 0.15
    field_strength: Optional[float] = None            # 1.5 or 3.0 T
    fat_suppressed: Optional[bool] = None
    aif: str = "parker"                               # "parker" (2006) | "weinmann" (biexponential)
    relaxivity: tuple[float, float] = (3.4, 5.0)      # r1, /mM/s
    tr_ms: tuple[float, float] = (4.0, 6.0)
    flip_deg: tuple[float, float] = (10.0, 15.0)
    density: Optional[str] = None                     # BI-RADS "a".."d"
    bpe: Optional[str] = None                         # "minimal" | "mild" | "moderate" | "marked"
    p_no_lesion: float = 0.1
    p_multifocal: float = 0.15
    lesion_diameter_mm: tuple[float, float] = (5.0, 50.0)
    p_rim: float = 0.3
    p_spiculated: float = 0.3
    curve_probs: tuple[float, float, float] = (0.5, 0.35, 0.15)  # washout, plateau, persistent
    n_benign: tuple[int, int] = (0, 3)
    benign_diameter_mm: tuple[float, float] = (3.0, 9.0)  # benign foci; fibroadenoma-like: 10..25
    p_non_mass: float = 0.0                           # the primary lesion is non-mass enhancement
    n_lymph_nodes: tuple[int, int] = (0, 0)           # intramammary lymph nodes (synth.nodes); 0: none drawn
    lymph_node_mm: tuple[float, float] = (6.0, 12.0)  # their long axis
    n_breast_vessels: tuple[int, int] = (1, 3)        # per breast
    noise: tuple[float, float] = (0.03, 0.07)         # Rician sigma / fibroglandular pre signal
    bias: tuple[float, float] = (0.05, 0.25)
    motion_vox: tuple[float, float] = (0.0, 0.6)      # largest shift per axis between phases
    psf_sigma_vox: float = 0.5
    gain: tuple[float, float] = (150.0, 450.0)        # fibroglandular pre-contrast grey level
    int_range: str = "random"                         # "int16" | "uint16" | "random"


@dataclass
class Phantom:
    """A synthetic study with its ground truth (all images on the study grid)."""

    study: DCEStudy
    tumor: sitk.Image
    breast: sitk.Image
    labels: sitk.Image
    lesions: list[dict[str, Any]]
    config: PhantomConfig

    def tumor_array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.tumor)

    def breast_array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.breast)
