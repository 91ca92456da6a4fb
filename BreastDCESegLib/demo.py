"""The embedded demo: a realistic phantom study, the default model, a readable result.

Usage::

    breastdceseg demo --output demo-output

writes ``demo-output/<case>.nii.gz``, ``.seg.nrrd``, ``.json`` and ``<case>_overlay.png``
(the first subtraction image through the tumor with the AI contour in red and the
phantom truth in green), and prints volume, diameter, T-stage and Dice against truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from .study import DCEStudy


def _window(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1.0, 99.7])
    return np.clip((image - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)


def _edge(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def overlay_png(study: DCEStudy, prediction: np.ndarray, truth: Optional[np.ndarray], path: Path,
                scale: int = 2) -> int:
    """Write the first subtraction image on the slice with most tumor, with contours.

    Red: prediction, green: truth. Returns the slice index (z) drawn.
    """
    from PIL import Image

    ref = truth if truth is not None and truth.any() else prediction
    z = int(np.argmax(ref.reshape(ref.shape[0], -1).sum(axis=1))) if ref.any() else ref.shape[0] // 2
    sub = study.subtraction(1)[z]
    grey = _window(sub)
    rgb = np.stack([grey] * 3, axis=-1)
    if truth is not None:
        rgb[_edge(truth[z].astype(bool))] = (40, 220, 40)
    rgb[_edge(prediction[z].astype(bool))] = (235, 40, 40)
    # LPS arrays have row 0 anterior for axial images: this is the radiological view.
    img = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(path)
    return z


def _choose_model(model_id: Optional[str]) -> tuple[Optional[str], list[str]]:
    """The model to run: the one asked for, or the registry default, or the kinetic fallback."""
    notes = []
    if model_id is not None:
        return model_id, notes
    try:
        import torch  # noqa: F401
    except ImportError:
        notes.append("torch is not installed: using the weight-free kinetic method")
        return "kinetic", notes
    return None, notes


def run_demo(output: Path = Path("demo-output"), model_id: Optional[str] = None,
             size: tuple[int, int, int] = (256, 256, 80), seed: int = 20231, device: str = "auto",
             overwrite: bool = False) -> int:
    """Generate, segment, measure and draw one phantom study. Returns a process exit code."""
    from . import inference, metrics, synth
    from .outputs import write_case_outputs

    output = Path(output)
    print(f"BreastDCESeg demo: generating a {size[0]}x{size[1]}x{size[2]} phantom DCE study (seed {seed})")
    phantom = synth.make_phantom(seed=seed, size=size)
    study = phantom.study
    study.case_id = f"phantom_{seed}"
    print(f"  {study.n_phases} phases, times {[None if t is None else round(t) for t in study.times]} s, "
          f"spacing {tuple(round(s, 2) for s in study.spacing)} mm")
    model_id, notes = _choose_model(model_id)
    for note in notes:
        print(f"  note: {note}")

    def progress(stage: str, fraction: float, message: str = "") -> None:
        print(f"\r  {stage:<12}{fraction:6.0%} {message[:50]:<50}", end="", file=sys.stderr, flush=True)

    result = inference.segment(study, model_id, device=device, progress=progress)
    print(file=sys.stderr)
    truth = phantom.tumor_array() if hasattr(phantom, "tumor_array") else _array(phantom.tumor)
    pred = result.tumor_array() > 0
    scores = metrics.evaluate(pred, truth > 0, study.spacing)
    extra = {"demo": {"seed": seed, "size": list(size), "against_phantom_truth": scores,
                      "weights_note": "demo weights trained on synthetic phantoms — not for clinical use"}}
    paths = write_case_outputs(study, result, output, overwrite=overwrite, include_breast=True, extra_report=extra)
    png = output / f"{study.case_id}_overlay.png"
    z = overlay_png(study, pred, truth > 0, png)
    report = json.loads(paths["report"].read_text())
    tumor = report["tumor"]
    total = sum(result.seconds.values())
    print(f"  model: {result.model_id} on {result.device} in {total:.1f} s")
    for w in result.warnings:
        print(f"  warning: {w}")
    print(f"  tumor volume {tumor['volume_ml']:.2f} mL, longest diameter {tumor['longest_diameter_mm']:.1f} mm, "
          f"{tumor['t_stage']}, {tumor['lesion_count']} lesion(s)")
    hd = scores.get("hd95_mm")
    print(f"  against the phantom truth: Dice {scores['dice']:.3f}, HD95 "
          f"{'n/a' if hd is None else f'{hd:.1f} mm'}")
    print(f"  wrote {paths['label']}, {paths['segmentation']}, {paths['report']}")
    print(f"  overlay (slice {z}, red = AI, green = truth): {png}")
    print("  Demo weights are trained on synthetic phantoms — not for clinical use.")
    return 0


def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)
