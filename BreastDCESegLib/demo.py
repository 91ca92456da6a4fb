"""The embedded demo: a realistic phantom study, the default model, a readable result.

Usage::

    breastdceseg demo --output demo-output

writes the case folder ``demo-output/<case>/`` with ``<case>.nii.gz``, ``.seg.nrrd``, ``.json``
and ``<case>_overlay.png`` (the first subtraction image through the tumor with the AI contour
in red and the phantom truth in green), all at once, and prints volume, diameter, T-stage and
Dice against truth. Outputs of an earlier run are kept (nothing runs, exit 0) unless
``overwrite``; the exit codes are those of ``segment`` and ``batch``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .console import ConsoleProgress, tumor_line
from .study import DCEStudy


def _window(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1.0, 99.7])
    return np.clip((image - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)


def _edge(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def _contoured(grey: np.ndarray, prediction: np.ndarray, truth: Optional[np.ndarray]) -> np.ndarray:
    rgb = np.stack([grey] * 3, axis=-1)
    if truth is not None:
        rgb[_edge(truth.astype(bool))] = (40, 220, 40)
    rgb[_edge(prediction.astype(bool))] = (235, 40, 40)
    return rgb


def _zoom_box(mask: np.ndarray, shape: tuple, min_half: int = 12) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square around ``mask`` with a margin of its own size, inside ``shape``."""
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    half = max(min_half, int(max(ys.max() - ys.min(), xs.max() - xs.min()) * 1.2) // 2 + 4)
    half = min(half, min(shape) // 2)
    y0, x0 = int(np.clip(cy - half, 0, shape[0] - 2 * half)), int(np.clip(cx - half, 0, shape[1] - 2 * half))
    return y0, y0 + 2 * half, x0, x0 + 2 * half


def overlay_png(study: DCEStudy, prediction: np.ndarray, truth: Optional[np.ndarray], path: Path,
                scale: int = 2, caption: str = "") -> int:
    """Write the first subtraction image on the slice with most tumor, with contours: the whole
    slice (the zoomed region boxed in yellow) and, beside it, the lesion zoomed; ``caption`` and
    the colour key below. Red: prediction, green: truth. Returns the slice index (z) drawn."""
    from PIL import Image, ImageDraw

    ref = truth if truth is not None and truth.any() else prediction
    z = int(np.argmax(ref.reshape(ref.shape[0], -1).sum(axis=1))) if ref.any() else ref.shape[0] // 2
    rgb = _contoured(_window(study.subtraction(1)[z]), prediction[z], None if truth is None else truth[z])
    # LPS arrays have row 0 anterior for axial images: this is the radiological view.
    size = (rgb.shape[1] * scale, rgb.shape[0] * scale)
    panels = [Image.fromarray(rgb).resize(size, Image.NEAREST)]
    lesion = ref[z].astype(bool) | prediction[z].astype(bool)
    if lesion.any():
        y0, y1, x0, x1 = _zoom_box(lesion, rgb.shape[:2])
        zoom = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        panels.append(zoom.resize((size[1] * (x1 - x0) // (y1 - y0), size[1]), Image.NEAREST))
        ImageDraw.Draw(panels[0]).rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1],
                                            outline=(250, 210, 40), width=2)
    strip = 34
    canvas = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), size[1] + strip), (0, 0, 0))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 4
    draw = ImageDraw.Draw(canvas)
    draw.text((6, size[1] + 4), caption or f"{study.case_id}, slice {z}: first subtraction (post1 - pre)",
              fill=(230, 230, 230))
    draw.text((6, size[1] + 18), "red: AI", fill=(235, 40, 40))
    if truth is not None:
        draw.text((70, size[1] + 18), "green: phantom truth", fill=(40, 220, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    canvas.save(tmp)
    tmp.replace(path)
    return z


def _choose_model(model_id: Optional[str]) -> tuple[Optional[str], list[str]]:
    """The model to run: the one asked for, or the registry default, or — when the default
    cannot run here (torch/MONAI missing) — the weight-free kinetic method, with a note.
    A model asked for by name that cannot run raises MissingDependencyError (one line)."""
    from .environment import DEEP_INSTALL, missing_packages, require_model_id
    from .models.registry import load_registry

    if model_id is not None:
        require_model_id(model_id)
        return model_id, []
    registry = load_registry()
    missing = missing_packages(registry.get(None))
    if missing:
        return "kinetic", [f"{', '.join(missing)} not installed: using the weight-free kinetic method instead of "
                           f"the default model {registry.default_id} ({DEEP_INSTALL} installs them)"]
    return None, []


def run_demo(output: Path = Path("demo-output"), model_id: Optional[str] = None,
             size: tuple[int, int, int] = (256, 256, 80), seed: int = 20231, device: str = "auto",
             overwrite: bool = False) -> int:
    """Generate, segment, measure and draw one phantom study. Returns a process exit code."""
    from . import inference, metrics, preflight, synth
    from .cli_segment import existing_case
    from .outputs import write_case_outputs

    preflight.check_device(device)
    if model_id is not None:
        preflight.check_model(model_id)
    output = preflight.check_output_dir(output)  # before any work: exit 2 when it cannot be written
    kept = existing_case(output, f"phantom_{seed}", overwrite)
    if kept is not None:  # the same rule as segment and batch: complete outputs are skipped, exit 0
        print(f"BreastDCESeg demo: {output / f'phantom_{seed}'} already holds this demo's result "
              f"(tumor {tumor_line(kept['tumor'])}); nothing was run. Pass --overwrite to run it again.")
        return 0
    print(f"BreastDCESeg demo: generating a {size[0]}x{size[1]}x{size[2]} phantom DCE study (seed {seed})")
    phantom = synth.make_phantom(seed=seed, size=size)
    study = phantom.study
    study.case_id = f"phantom_{seed}"
    print(f"  {study.n_phases} phases, times {[None if t is None else round(t) for t in study.times]} s, "
          f"spacing {tuple(round(s, 2) for s in study.spacing)} mm")
    model_id, notes = _choose_model(model_id)
    for note in notes:
        print(f"  note: {note}")

    progress = ConsoleProgress(prefix="  ")
    result = inference.segment(study, model_id, device=device, progress=progress)
    progress.close()
    truth = phantom.tumor_array() if hasattr(phantom, "tumor_array") else _array(phantom.tumor)
    pred = result.tumor_array() > 0
    scores = metrics.evaluate(pred, truth > 0, study.spacing)
    extra = {"demo": {"seed": seed, "size": list(size), "against_phantom_truth": scores}}
    if result.extra.get("demo"):
        extra["demo"]["weights_note"] = "demo weights trained on synthetic phantoms — not for clinical use"
    drawn: list[int] = []
    caption = (f"{study.case_id}: first subtraction, {result.model_id}, Dice {scores['dice']:.3f} "
               + ("(demo weights, synthetic phantom)" if result.extra.get("demo") else "(synthetic phantom)"))
    png_name = f"{study.case_id}_overlay.png"
    paths = write_case_outputs(  # the overlay is committed with the case's other files
        study, result, output, overwrite=overwrite, include_breast=True, extra_report=extra,
        extra_files={png_name: lambda path: drawn.append(overlay_png(study, pred, truth > 0, path, caption=caption))})
    png, z = paths[png_name], drawn[0]
    report = json.loads(paths["report"].read_text())
    tumor = report["tumor"]
    total = sum(result.seconds.values())
    print(f"  model: {result.model_id} on {result.device}, inference {total:.1f} s")
    for w in report.get("warnings", []):
        print(f"  warning: {w}")
    print(f"  tumor {tumor_line(tumor)}")
    hd = scores.get("hd95_mm")
    print(f"  against the phantom truth: Dice {scores['dice']:.3f}, HD95 "
          f"{'n/a' if hd is None else f'{hd:.1f} mm'}")
    print(f"  wrote {paths['label']}, {paths['segmentation']}, {paths['report']}")
    print(f"  overlay (slice {z}, red = AI, green = truth): {png}")
    if result.extra.get("demo"):  # a network with demo weights ran (not the weight-free kinetic method)
        print("  Demo weights are trained on synthetic phantoms — not for clinical use.")
    else:
        print("  Synthetic phantom study: not for clinical use.")
    return 0


def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)
