"""Regenerate the screenshots of the README and the Extensions Index entry from Slicer's own views.

A synthetic phantom study (the demo's: 256x256x80, six phases, seed 20231) is segmented by
a registry model, and Slicer's slice and 3-D views are rendered offscreen (slicer-core wheel)
with the AI tumor segment (red fill and outline) and the phantom's truth (green outline):

    Screenshots/1.png   axial, sagittal, coronal through the largest lesion + 3-D view
    Screenshots/2.png   the axial view, larger, zoomed on the lesion

Each image carries a caption saying the data are synthetic and the weights demo weights.

Usage::

    .venv/bin/python scripts/screenshots.py                   # the registry's default model
    .venv/bin/python scripts/screenshots.py --model kinetic --output Screenshots
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import inference, synth  # noqa: E402
from BreastDCESegLib.cli import DEMO_SEED, DEMO_SIZE  # noqa: E402
from BreastDCESegLib.mrml.render import compose  # noqa: E402
from BreastDCESegLib.mrml.render_case import render_result  # noqa: E402
from BreastDCESegLib.report import model_status  # noqa: E402


def captioned(image, caption: str):
    """``image`` (PIL) with a dark caption strip below it."""
    from PIL import Image, ImageDraw

    strip = 26
    out = Image.new("RGB", (image.width, image.height + strip), (24, 24, 24))
    out.paste(image, (0, 0))
    ImageDraw.Draw(out).text((8, image.height + 7), caption, fill=(235, 235, 235))
    return out


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="registry id (default: the registry's default)")
    parser.add_argument("--output", default=str(ROOT / "Screenshots"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from PIL import Image

    phantom = synth.make_phantom(seed=DEMO_SEED, size=DEMO_SIZE)
    result = inference.segment(phantom.study, args.model, device=args.device)
    model = model_status(result.model_id)
    weights = "demo weights" if model["demo"] else model["status"].split(" — ")[0]
    caption = (f"Synthetic phantom study (simulated DCE-MRI, not patient data) - model {result.model_id} "
               f"({weights}) - red: AI tumor, green: phantom truth - rendered by Slicer's views")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    views = render_result(phantom.study, result, reference=phantom.tumor, size=(400, 400), zoom=2.5,
                          show_breast=False, threed_distance_mm=260.0)
    paths = [out / "1.png", out / "2.png"]
    captioned(compose(views), caption).save(paths[0])
    close_up = render_result(phantom.study, result, reference=phantom.tumor, views=("Red",), size=(640, 640), zoom=3.0,
                             show_breast=False)
    captioned(Image.fromarray(close_up.images["Red"]),
              f"Axial subtraction through the lesion - {result.model_id} - synthetic phantom").save(paths[1])
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    main()
