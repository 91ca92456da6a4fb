"""Named site profiles: phantom studies that differ the way real acquisition sites differ.

Each profile is a set of :class:`~.config.PhantomConfig` settings plus a native matrix
(the field of view is ``native_size x native_spacing``). A smaller matrix keeps the field
of view, so its voxels grow in proportion (``longest=128`` on a 448-voxel profile gives
3.5x coarser voxels and the same slab thickness ratio).

============== ======== ======= ==== ============= =================== ====== =========== ========= ====================================
profile        dtype    gain    T    fat sat.      view, field         phases first post  BPE       other
============== ======== ======= ==== ============= =================== ====== =========== ========= ====================================
reference      random   150-450 any  random        random (the demo    2-8    60-120 s    random    the default generator: the one site
                                                   weights' training)                              the demo weights were trained on
academic-3t    uint16   900-    3.0  on            axial, bilateral,   6      55-70 s     mild      0.75x0.75x1.0 mm, low noise, 60 s
               (high)   1400                       thorax in view                                  frames, multifocal 25 %
community-15t  int16    120-250 1.5  off (bright   axial, bilateral,   4      90-120 s    moderate  0.9x0.9x2.5 mm, strong bias field,
                                     fat)          breast-only AP FOV                              noisier, Weinmann AIF, 100 s frames
sagittal-uni   uint16   1500-   1.5  on            sagittal, one       8      30-45 s     mild      0.6x0.6x3.0 mm (thick slices),
               (high)   3000                       breast                                          30-45 s frames
two-phase      int16    200-400 3.0  on            axial, unilateral   2      120-150 s   minimal   a pre and one post phase, half the
                                                                                                   studies without phase times
dense-motion   int16    150-300 1.5  on            axial, bilateral    5      60-90 s     marked    density d, 1-2 voxel motion between
                                                                                                   phases, high noise and bias
benign-mix     uint16   300-600 3.0  on            axial, bilateral    5      60-90 s     moderate  2-4 fibroadenoma-like benign lesions
                                                                                                   (10-22 mm, round, persistent), 40 %
                                                                                                   without a malignant lesion
lesion-free    random   150-450 any  random        axial, bilateral    5      60-120 s    random    no malignant lesion; 0-2 benign foci
multifocal-nme uint16   300-600 3.0  on            axial, bilateral    6      60-80 s     mild      multifocal 80 %, non-mass
                                                                                                   enhancement 40 %, rim 60 %
tiny-lesions   int16    150-300 1.5  on            axial, bilateral    5      60-90 s     mild      5-8 mm lesions at low SNR
                                                                                                   (noise 0.07-0.10)
lymph-nodes    uint16   300-600 any  random        axial, bilateral    5      60-120 s    mild      1-3 intramammary lymph nodes
                                                                                                   (6-12 mm, washout cortex, fatty
                                                                                                   hilum), 40 % without a cancer
============== ======== ======= ==== ============= =================== ====== =========== ========= ====================================

Usage::

    from BreastDCESegLib.synth import sites
    ph = sites.make_site_phantom("community-15t", seed=7, longest=128)
    ph.study.metadata["site"]        # "community-15t"
    sites.SITES["two-phase"].overrides["n_post"]   # 1
    cohort = sites.make_site_cohort("lesion-free", 3, first_seed=9000, longest=96)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .config import Phantom
from .phantom import make_phantom


@dataclass(frozen=True)
class SiteProfile:
    """One acquisition site: phantom settings and the native matrix and voxel size."""

    name: str
    description: str
    native_size: tuple[int, int, int]
    native_spacing: Optional[tuple[float, float, float]]  # None: drawn per study (the reference generator)
    overrides: dict[str, Any] = field(default_factory=dict)

    def size(self, longest: Optional[int] = None) -> tuple[int, int, int]:
        """The matrix scaled so its longest side is ``longest`` voxels (None: the native matrix)."""
        if longest is None:
            return self.native_size
        f = longest / max(self.native_size)
        return tuple(max(8, int(round(n * f))) for n in self.native_size)

    def spacing(self, size: tuple[int, int, int]) -> Optional[tuple[float, float, float]]:
        """Voxel size (mm) that keeps the native field of view on a ``size`` matrix."""
        if self.native_spacing is None:
            return None
        return tuple(round(s * n / m, 4) for s, n, m in zip(self.native_spacing, self.native_size, size))


_COMMON_AXIAL = dict(orientation="axial", p_unknown_times=0.0)
SITES: dict[str, SiteProfile] = {p.name: p for p in [
    SiteProfile("reference", "the default generator (training site of the demo weights)", (128, 128, 48), None, {}),
    SiteProfile("academic-3t", "3 T, fat-suppressed, high-resolution bilateral axial, high vendor gain",
                (448, 448, 160), (0.75, 0.75, 1.0),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=3.0, fat_suppressed=True, n_post=5,
                     first_post_s=(55.0, 70.0), interval_s=(55.0, 65.0), bpe="mild", gain=(900.0, 1400.0),
                     int_range="uint16", noise=(0.02, 0.04), bias=(0.05, 0.15), motion_vox=(0.0, 0.3),
                     p_multifocal=0.25)),
    SiteProfile("community-15t", "1.5 T, no fat suppression, breast-only AP field, thick slices, strong bias",
                (384, 192, 64), (0.9, 0.9, 2.5),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=1.5, fat_suppressed=False, n_post=3,
                     first_post_s=(90.0, 120.0), interval_s=(90.0, 110.0), bpe="moderate", gain=(120.0, 250.0),
                     int_range="int16", noise=(0.05, 0.08), bias=(0.25, 0.4), aif="weinmann")),
    SiteProfile("sagittal-uni", "sagittal unilateral, thick slices, fast frames, 8 phases",
                (256, 256, 50), (0.6, 0.6, 3.0),
                dict(orientation="sagittal", p_unknown_times=0.0, field_strength=1.5, fat_suppressed=True, n_post=7,
                     first_post_s=(30.0, 45.0), interval_s=(30.0, 45.0), bpe="mild", gain=(1500.0, 3000.0),
                     int_range="uint16")),
    SiteProfile("two-phase", "a pre- and one post-contrast phase, unilateral axial, times often missing",
                (256, 256, 80), (0.8, 0.8, 1.5),
                dict(orientation="axial", layout="single", field_strength=3.0, fat_suppressed=True, n_post=1,
                     first_post_s=(120.0, 150.0), p_unknown_times=0.5, bpe="minimal", gain=(200.0, 400.0),
                     int_range="int16")),
    SiteProfile("dense-motion", "dense breasts, marked BPE, motion between phases, noisy",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=1.5, fat_suppressed=True, n_post=4,
                     density="d", bpe="marked", motion_vox=(1.0, 2.0), noise=(0.06, 0.09), bias=(0.2, 0.35),
                     gain=(150.0, 300.0), int_range="int16")),
    SiteProfile("benign-mix", "fibroadenoma-like benign lesions beside (or instead of) the cancer",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=3.0, fat_suppressed=True, n_post=4,
                     bpe="moderate", n_benign=(2, 4), benign_diameter_mm=(10.0, 22.0), p_no_lesion=0.4,
                     gain=(300.0, 600.0), int_range="uint16")),
    SiteProfile("lesion-free", "screening studies without a malignant lesion (0-2 benign foci)",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", n_post=4, p_no_lesion=1.0, n_benign=(0, 2))),
    SiteProfile("multifocal-nme", "multifocal disease, non-mass and rim enhancement",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=3.0, fat_suppressed=True, n_post=5,
                     first_post_s=(60.0, 80.0), bpe="mild", p_multifocal=0.8, p_non_mass=0.4, p_rim=0.6,
                     gain=(300.0, 600.0), int_range="uint16")),
    SiteProfile("tiny-lesions", "5-8 mm lesions at low SNR",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", field_strength=1.5, fat_suppressed=True, n_post=4,
                     bpe="mild", lesion_diameter_mm=(5.0, 8.0), p_multifocal=0.0, noise=(0.07, 0.10),
                     gain=(150.0, 300.0), int_range="int16")),
    SiteProfile("lymph-nodes", "intramammary lymph nodes (washout cortex, fatty hilum) beside or instead of a cancer",
                (320, 320, 96), (1.0, 1.0, 1.6),
                dict(_COMMON_AXIAL, layout="bilateral", n_post=4, bpe="mild", n_lymph_nodes=(1, 3),
                     lymph_node_mm=(6.0, 12.0), p_no_lesion=0.4, n_benign=(0, 1), gain=(300.0, 600.0),
                     int_range="uint16")),
]}


def site_names() -> list[str]:
    return list(SITES)


def get_site(name: str) -> SiteProfile:
    """The profile called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    if name not in SITES:
        raise KeyError(f"unknown site profile {name!r}; known: {', '.join(SITES)}")
    return SITES[name]


def make_site_phantom(name: str, seed: int = 0, longest: Optional[int] = 128,
                      size: Optional[tuple[int, int, int]] = None, **config_overrides: Any) -> Phantom:
    """One phantom of site ``name`` (matrix ``size``, or the native one scaled to ``longest``).

    Extra keyword settings override the profile's (same names as :class:`PhantomConfig`).
    The study's metadata gets ``site``; the reference profile keeps the plain generator.
    """
    profile = get_site(name)
    size = tuple(int(s) for s in size) if size is not None else profile.size(longest)
    settings = dict(profile.overrides)
    spacing = profile.spacing(size)
    if spacing is not None:
        settings["spacing"] = spacing
    settings.update(config_overrides)
    ph = make_phantom(seed=seed, size=size, **settings)
    ph.study.metadata["site"] = name
    return ph


def make_site_cohort(name: str, n: int, first_seed: int = 0, **kwargs: Any) -> list[Phantom]:
    """``n`` phantoms of site ``name`` with seeds ``first_seed .. first_seed + n - 1``."""
    return [make_site_phantom(name, seed=first_seed + i, **kwargs) for i in range(n)]

