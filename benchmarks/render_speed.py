"""Time of rendering Slicer's views offscreen once the scene is loaded (target: a slice view < 0.5 s).

A phantom study is segmented (kinetic model, in-process), its first subtraction and the AI
segmentation are put in a scene (``slicer-core`` wheel), and the views are rendered through
:func:`BreastDCESegLib.mrml.render.render_views` with kept offscreen views, as the panel's
report and the tests do. Measured: the first render of each view (views set up: slice logic,
displayable managers, OpenGL context), then repeated renders of the Red view at other slice
positions (reslice + segment fill/outline + read-back), ``render_views`` for the Red view
with the lesion centre known, the lesion centre itself (connected components of the tumor),
and the 3-D view from other camera angles. Writes ``benchmarks/results/render_speed.json``.

Usage::

    python benchmarks/render_speed.py                    # 256x256x80 demo-size study, 400x400 views
    python benchmarks/render_speed.py --size 160 128 24 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import inference, mrml, synth  # noqa: E402
from BreastDCESegLib.mrml import render  # noqa: E402
from BreastDCESegLib.mrml.render_offscreen import OffscreenViews  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_S = 0.5


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[256, 256, 80], metavar=("X", "Y", "Z"))
    parser.add_argument("--view", type=int, default=400, help="view width and height in pixels")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20231)
    parser.add_argument("--output", default=str(RESULTS / "render_speed.json"))
    args = parser.parse_args(argv)

    phantom = synth.make_phantom(seed=args.seed, size=tuple(args.size), p_no_lesion=0.0, orientation="axial")
    result = inference.segment(phantom.study, "kinetic", device="cpu")
    context = mrml.new_scene_context()
    scene = context.scene
    started = time.perf_counter()
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    subtraction = mrml.add_subtraction_volumes(scene, phantom.study, parent=nodes)[0]
    segmentation = mrml.add_segmentation(scene, result, nodes)
    load_s = time.perf_counter() - started

    size = (args.view, args.view)
    started = time.perf_counter()
    views = OffscreenViews(scene, size=size)
    context_s = time.perf_counter() - started
    first = render.render_views(scene, subtraction, segmentation, size=size, offscreen=views)
    centre = first.centre_ras

    red = views.slice_view("Red")
    red_times = []
    for k in range(args.repeats):
        offset = centre[2] + (k % 7 - 3) * phantom.study.spacing[2]
        started = time.perf_counter()
        red.node.SetSliceOffset(offset)
        rgb = red.render()
        red_times.append(time.perf_counter() - started)
    assert rgb.shape == (args.view, args.view, 3)
    call_times = []
    for _ in range(max(3, args.repeats // 4)):
        started = time.perf_counter()
        render.render_views(scene, subtraction, segmentation, views=("Red",), size=size, centre_ras=centre,
                            offscreen=views)
        call_times.append(time.perf_counter() - started)
    started = time.perf_counter()
    render.lesion_centre_ras(segmentation)
    centre_s = time.perf_counter() - started
    threed = views.threed_view()
    threed_times = []
    for k in range(max(3, args.repeats // 4)):
        started = time.perf_counter()
        threed.look_at(centre, 300.0, direction=(0.3 * (k % 3 - 1), 1.0, 0.45))
        threed.render()
        threed_times.append(time.perf_counter() - started)
    views.close()
    context.close()

    report = {
        "study_size_xyz": list(args.size), "view_px": list(size), "seed": args.seed,
        "scene_load_s": round(load_s, 3), "offscreen_context_check_s": round(context_s, 3),
        "first_render_s": {name: round(v, 3) for name, v in first.seconds.items()},
        "red_rerender_s": _stats(red_times),
        "render_views_red_s": _stats(call_times),
        "lesion_centre_s": round(centre_s, 3),
        "threed_rerender_s": _stats(threed_times),
        "target_slice_view_s": TARGET_S,
        "meets_target": max(red_times) < TARGET_S and max(call_times) < TARGET_S,
        "opengl_window": os.environ.get("VTK_DEFAULT_OPENGL_WINDOW"),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
