"""The timing study on a real MRML scene: a scripted replay of a reading session (slice views,
the mouse over a view, window/level, a Segment Editor effect, edits, long pauses) with an
injected clock, checked to the exact second; no case lost when stopping fails or the scene
closes; the session summary as a table node and a plot chart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.scene_logic import SceneLogic
from BreastDCESegLib.study import DCEStudy

slicer = pytest.importorskip("slicer")


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


@pytest.fixture
def case(scene):
    """A small two-phase study in the scene with an AI segmentation (a 4 x 6 x 6 box)."""
    arrays = [np.full((8, 20, 20), 100.0), np.full((8, 20, 20), 150.0)]
    study = DCEStudy.from_arrays(arrays, spacing=(0.7, 0.7, 2.0), origin=(5, -3, 12), case_id="replay")
    nodes = mrml.add_study(scene, study, sequence=False)
    ai = np.zeros((8, 20, 20), np.uint8)
    ai[2:6, 5:11, 5:11] = 1
    result = SegmentationResult(tumor=study.image_like(ai, np.uint8), model_id="kinetic")
    seg = mrml.result_to_segmentation(result, nodes.pre, case_id=study.case_id)
    seg.SetAttribute(mrml.ATTR + "Seconds", "40.0")
    return study, nodes, seg, ai


def test_replayed_session_gives_exact_numbers(scene, case, tmp_path):
    study, nodes, seg, ai = case
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetLayoutName("Red")
    crosshair = scene.AddNewNodeByClass("vtkMRMLCrosshairNode")
    display = nodes.pre.GetDisplayNode()
    display.SetAutoWindowLevel(0)
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    clock = Clock()
    state = logic.startTiming("ai_refine", seg, reader="R1", idleThreshold=30.0, clock=clock, logFolder=tmp_path)
    editor_node = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")   # the Segment Editor opened after Start
    refined = ai.copy()
    refined[2:6, 5:11, 11] = 1

    def edit():
        mrml.set_segment(seg, "Tumor", refined)

    script = [  # (seconds after start, what the reader does)
        (4.0, lambda: slice_node.SetSliceOffset(3.0)),                  # scrolls
        (6.0, lambda: crosshair.SetCursorPositionRAS([1.0, 2.0, 3.0])),  # moves the mouse over the view
        (10.0, lambda: display.SetWindowLevel(200.0, 100.0)),           # window/level
        (11.0, lambda: display.SetWindowLevel(200.0, 100.0)),           # the same values again: not activity
        (15.0, lambda: editor_node.SetActiveEffectName("Paint")),       # picks an effect
        (18.0, edit),                                                    # paints
        (18.2, lambda: mrml.set_segment(seg, "Tumor", refined)),        # the same stroke's second event
        (100.0, edit),                                                   # after 81.8 s away: counts 30 s
        (160.0, lambda: slice_node.SetSliceOffset(5.0)),                # after 60 s: counts 30 s
    ]
    start = clock.now
    for at, action in script:
        clock.now = start + at
        action()
    clock.now = start + 170.0
    record, text = logic.stopTiming()
    assert logic.timingState is None
    assert record.wall_seconds == 170.0
    assert record.active_seconds == pytest.approx(4 + 2 + 4 + 5 + 3 + 0.2 + 30 + 30 + 10)   # 88.2
    assert record.idle_seconds == pytest.approx(51.8 + 30.0) and record.capped_gaps == 2
    assert record.active_seconds + record.idle_seconds == pytest.approx(record.wall_seconds)
    assert (record.edits, record.view_events, record.window_level_events, record.effect_events) == (2, 3, 1, 1)
    assert record.ai_seconds == 40.0 and record.total_seconds == pytest.approx(128.2)
    assert record.dice_ai_refined == pytest.approx(2 * 144 / (144 + 168))
    row = json.loads((tmp_path / "timing.jsonl").read_text().splitlines()[0])
    assert row["rule"].startswith("active = sum of the gaps") and "30 s" in row["rule"]
    assert row["active_seconds"] == pytest.approx(88.2) and row["stopped_by"] == "reader"
    assert "R1" in text
    slice_node.SetSliceOffset(9.0)                      # after Stop nothing is observed any more
    assert record.view_events == 3 and state.session.activity["slice_view"] == 3


def test_no_case_lost_when_stopping_fails(scene, case, tmp_path):
    study, nodes, seg, ai = case
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    clock = Clock()
    with pytest.raises(BadInputError, match="No case is being timed"):
        logic.stopTiming()
    logic.startTiming("ai_refine", seg, reader="R2", clock=clock)
    with pytest.raises(BadInputError, match="still running"):
        logic.startTiming("ai_refine", seg, clock=clock)
    clock.now += 12
    mrml.set_segment(seg, "Tumor", ai)
    clock.now += 3
    with pytest.raises(BadInputError, match="folder for the timing"):
        logic.stopTiming()                               # no folder: nothing stopped, nothing cleared
    assert logic.timingState is not None and logic.timingState.session.running
    seg.GetSegmentation().GetSegment(mrml.tumor_segment_id(seg)).SetName("Lesion")   # the segment was renamed
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):
        logic.stopTiming(logFolder=blocked)              # cannot write: the state is kept
    assert logic.timingState is not None and not logic.timingState.session.running
    clock.now += 500                                     # the times were frozen at the first Stop
    record, text = logic.stopTiming(logFolder=tmp_path / "log")
    assert logic.timingState is None
    assert record.wall_seconds == 15.0 and record.active_seconds == 15.0 and record.edits == 2   # paint + rename
    assert record.dice_ai_refined is None and "agreement not measured" in record.notes and "Tumor" in record.notes
    rows = [json.loads(line) for line in (tmp_path / "log" / "timing.jsonl").read_text().splitlines()]
    assert [(r["case_id"], r["reader"], r["wall_seconds"]) for r in rows] == [("replay", "R2", 15.0)]
    assert "agreement not measured" in text


def test_scene_close_stops_and_saves_the_case(scene, case, tmp_path):
    study, nodes, seg, ai = case
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    clock = Clock()
    logic.startTiming("manual", study=study, reader="R3", clock=clock, logFolder=tmp_path / "log")
    manual = logic.timingState.segmentation
    clock.now += 7
    mrml.set_segment(manual, "Tumor", ai)
    clock.now += 2
    scene.Clear(0)                                       # File > Close Scene
    assert logic.timingState is None and logic.timingClosedRecord.stopped_by == "scene-close"
    rows = [json.loads(line) for line in (tmp_path / "log" / "timing.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["stopped_by"] == "scene-close" and rows[0]["mode"] == "manual"
    assert rows[0]["wall_seconds"] == 9.0 and rows[0]["edits"] == 1 and rows[0]["reader"] == "R3"
    # without a folder chosen at Start the case goes to the fallback folder, with a note
    mrml.add_study(scene, study, sequence=False)
    logic.timingFallbackFolder = str(tmp_path / "fallback")
    logic.startTiming("manual", study=study, clock=clock)
    clock.now += 5
    scene.Clear(0)
    rows = [json.loads(line) for line in (tmp_path / "fallback" / "timing.jsonl").read_text().splitlines()]
    assert rows[0]["wall_seconds"] == 5.0 and "no log folder was chosen" in rows[0]["notes"]


def test_session_summary_table_plot_and_png(scene, case, tmp_path):
    from BreastDCESegLib import timing

    log = timing.TimingLog(tmp_path)
    for case_id, reader, mode, minutes in (("a", "R1", "manual", 14.0), ("b", "R1", "manual", 14.56),
                                           ("c", "R1", "ai_refine", 2.0), ("d", "R1", "ai_refine", 2.18)):
        log.append(timing.TimingRecord(case_id=case_id, mode=mode, started_at="", active_seconds=minutes * 60,
                                       wall_seconds=minutes * 60, ai_seconds=0.0, total_seconds=minutes * 60,
                                       edits=1, idle_threshold_s=30.0, reader=reader))
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    summary, table, chart, png = logic.timingSummary(tmp_path)
    assert summary["readers"]["R1"]["time_saved_min"] == pytest.approx(12.19)
    t = table.GetTable()
    assert t.GetNumberOfRows() == 4                      # R1 x 2 modes + all readers x 2 modes
    names = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
    assert t.GetValue(0, names.index("Minutes per case")).ToString() == "14.28 ± 0.40"
    assert t.GetValue(1, names.index("Time saved min")).ToString() == "12.19"
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(1)
    assert series.GetPlotType() == series.PlotTypeBar and series.GetYColumnName() == "ai_refine mean"
    data = series.GetTableNode().GetTable()
    columns = [data.GetColumnName(c) for c in range(data.GetNumberOfColumns())]
    assert data.GetValue(0, columns.index("ai_refine mean")).ToDouble() == pytest.approx(2.09)
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert logic.timingSummary(tmp_path)[1] is table     # refilled, not duplicated
    with pytest.raises(BadInputError, match="no case yet"):
        logic.timingSummary(tmp_path / "empty")
