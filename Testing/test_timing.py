"""timing.py: event-driven active time with an injected clock, edit counts, agreement,
the crash-proof log, the summary, and a real segmentation node driving the counter."""

import csv
import json

import numpy as np
import pytest

from BreastDCESegLib import timing, timing_summary
from BreastDCESegLib.timing import SegmentationObserver, TimingLog, TimingRecord, TimingSession


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def run_events(session, clock, gaps):
    """Advance the clock by each gap, then fire one edit event."""
    for gap in gaps:
        clock.advance(gap)
        session.record_edit()


# ----------------------------------------------------------------------------- core
def test_active_time_caps_idle_gaps_at_the_threshold():
    clock = FakeClock()
    session = TimingSession("c1", "manual", idle_threshold_s=30, clock=clock).start()
    run_events(session, clock, [5, 5, 60, 10, 30, 31])  # 60 s and 31 s count 30 s each; 30 s counts fully
    assert session.active_seconds == 5 + 5 + 30 + 10 + 30 + 30
    clock.advance(4)
    record = session.stop()
    assert record.active_seconds == 114
    assert record.wall_seconds == 145
    assert record.edits == 6
    assert record.capped_gaps == 2 and record.idle_seconds == 31      # 145 = 114 + 31
    assert record.total_seconds == 114 and record.ai_seconds == 0
    assert record.dice_ai_refined is None and record.stopped_by == "reader"
    assert "capped at the idle threshold of 30 s" in record.rule
    with pytest.raises(RuntimeError):
        session.stop()


def test_burst_of_events_is_one_edit_and_activity_is_not_an_edit():
    clock = FakeClock()
    session = TimingSession("c1", "ai_refine", clock=clock, merge_window_s=0.5, ai_seconds=40.2).start()
    clock.advance(3)
    for _ in range(3):  # one Segment Editor operation fires several events
        session.record_edit()
    clock.advance(0.2)
    session.record_edit()
    clock.advance(20)
    session.record_activity("window_level")
    clock.advance(20)
    session.record_edit()
    record = session.stop()
    assert record.edits == 2 and record.window_level_events == 1 and record.view_events == 0
    assert record.active_seconds == pytest.approx(43.2)
    assert record.total_seconds == pytest.approx(83.4)
    assert record.ai_seconds == pytest.approx(40.2)


def test_events_before_start_are_ignored_and_modes_checked():
    clock = FakeClock()
    session = TimingSession("c1", "manual", clock=clock, ai_seconds=99)
    session.record_edit()
    session.start()
    clock.advance(10)
    assert session.stop().edits == 0 and session.record.ai_seconds == 0
    with pytest.raises(ValueError):
        TimingSession("c1", "semi-auto")


def test_agreement_on_known_masks():
    ai = np.zeros((10, 12, 14), np.uint8)
    ai[2:6, 3:7, 4:8] = 1                   # 64 voxels
    refined = np.zeros_like(ai)
    refined[2:6, 3:7, 5:9] = 1              # shifted one voxel in x: overlap 48
    clock = FakeClock()
    session = TimingSession("c2", "ai_refine", clock=clock).start()
    clock.advance(12)
    record = session.stop(refined=refined, ai=ai, reference=refined, spacing=(0.5, 1.0, 2.0))
    assert record.dice_ai_refined == pytest.approx(0.75)
    assert record.dice_refined_reference == 1.0 and record.hd95_refined_reference == 0.0
    assert record.dice_ai_reference == pytest.approx(0.75)
    assert 0 < record.hd95_ai_refined <= 0.5 + 1e-9  # the shift is one 0.5 mm voxel
    assert record.hd95_ai_refined == record.hd95_ai_reference


# ----------------------------------------------------------------------------- log
def make_record(case, mode, minutes, edits=3, dice=None):
    return TimingRecord(case_id=case, mode=mode, started_at="2024-01-01T00:00:00+00:00",
                        active_seconds=minutes * 60, wall_seconds=minutes * 60 + 5, ai_seconds=0.0,
                        total_seconds=minutes * 60, edits=edits, idle_threshold_s=30.0, dice_ai_refined=dice)


def test_log_is_durable_after_each_case(tmp_path):
    log = TimingLog(tmp_path / "timing")
    log.append(make_record("c1", "manual", 14.0))
    rows = list(csv.DictReader(open(log.csv_path, encoding="utf-8")))
    assert [r["case_id"] for r in rows] == ["c1"] and rows[0]["dice_ai_refined"] == ""
    assert len(log.jsonl_path.read_text().splitlines()) == 1
    TimingLog(tmp_path / "timing").append(make_record("c2", "ai_refine", 2.0, dice=0.9))  # a new process
    text = log.csv_path.read_text()
    assert text.count("case_id") == 1 and len(text.strip().splitlines()) == 3
    lines = log.jsonl_path.read_text().splitlines()
    assert json.loads(lines[1])["dice_ai_refined"] == 0.9
    with open(log.jsonl_path, "a") as fh:  # a crash in the middle of writing a third case
        fh.write('{"case_id": "c3", "mo')
    assert [r.case_id for r in log.read()] == ["c1", "c2"]


def test_csv_of_an_older_version_is_rewritten_from_the_json_lines(tmp_path):
    log = TimingLog(tmp_path)
    log.append(make_record("c1", "manual", 14.0))
    log.csv_path.write_text("case_id,mode,active_seconds\nc1,manual,840\n")   # fewer columns
    log.append(make_record("c2", "manual", 12.0))
    rows = list(csv.DictReader(open(log.csv_path, encoding="utf-8")))
    assert [r["case_id"] for r in rows] == ["c1", "c2"]
    assert list(rows[0]) == TimingRecord.field_names() and rows[1]["total_seconds"] == "720.0"


def test_summary_per_reader_and_mode_like_table_4(tmp_path):
    from PIL import Image

    records = [make_record("a", "manual", 14.0), make_record("b", "manual", 14.56),
               make_record("c", "ai_refine", 2.0, dice=0.9), make_record("d", "ai_refine", 2.18, dice=0.8)]
    for r in records:
        r.reader = "R1"
    records += [make_record("e", "manual", 10.0), make_record("f", "ai_refine", 3.0, dice=0.7)]
    records[-2].reader = records[-1].reader = "R2"
    s = timing_summary.summarize(records)
    r1 = {g["mode"]: g for g in s["groups"] if g["reader"] == "R1"}
    assert r1["manual"]["cases"] == 2 and r1["manual"]["total_min_mean"] == pytest.approx(14.28)
    assert r1["manual"]["total_min_sd"] == pytest.approx(0.56 / 2 ** 0.5, abs=1e-4)
    assert r1["ai_refine"]["total_min_mean"] == pytest.approx(2.09)
    assert r1["ai_refine"]["total_min_sd"] == pytest.approx(0.18 / 2 ** 0.5, abs=1e-4)
    assert r1["ai_refine"]["dice_ai_refined_mean"] == pytest.approx(0.85)
    assert r1["ai_refine"]["dice_ai_refined_sd"] == pytest.approx(0.1 / 2 ** 0.5, abs=1e-4)
    assert s["readers"]["R1"]["time_saved_min"] == pytest.approx(12.19)
    assert s["readers"]["R1"]["time_saved_percent"] == pytest.approx(85.36, abs=0.01)
    assert s["readers"]["R2"]["time_saved_min"] == pytest.approx(7.0)
    r2 = next(g for g in s["groups"] if g["reader"] == "R2" and g["mode"] == "manual")
    assert r2["total_min_sd"] is None                                   # one case: no SD
    assert s["modes"]["manual"]["total_min_mean"] == pytest.approx((14.0 + 14.56 + 10.0) / 3, abs=1e-4)
    text = timing_summary.format_summary(s)
    assert "14.28 ± 0.40" in text and "2.09 ± 0.13" in text and "12.19" in text and "0.850 ± 0.071" in text
    assert [(r["Reader"], r["Mode"]) for r in timing_summary.table_rows(s)] == [
        ("R1", "manual"), ("R1", "AI + refinement"), ("R2", "manual"), ("R2", "AI + refinement"),
        ("all readers", "manual"), ("all readers", "AI + refinement")]

    bars = timing_summary.plot_png(s, tmp_path / "summary.png")
    image = Image.open(tmp_path / "summary.png").convert("RGB")
    assert image.size == (720, 420) and len(bars) == 4
    heights = {key: y1 + 1 - y0 for key, (x0, y0, x1, y1) in bars.items()}
    assert heights[("R1", "manual")] / heights[("R1", "ai_refine")] == pytest.approx(14.28 / 2.09, rel=0.03)
    x0, y0, x1, y1 = bars[("R2", "ai_refine")]
    assert image.getpixel(((x0 + x1) // 2, y1 - 2)) == timing_summary.BAR_COLORS["ai_refine"]
    assert timing_summary.format_summary(timing_summary.summarize([])) == "no timed case yet"


# ----------------------------------------------------------------------------- real MRML node
@pytest.fixture
def slicer_context():
    pytest.importorskip("slicer")  # the timing core above runs without Slicer
    from slicer_scene import slicer_scene_context

    with slicer_scene_context() as context:
        yield context


def test_segmentation_node_edits_drive_the_counter(slicer_context):
    from BreastDCESegLib import mrml
    from BreastDCESegLib.results import SegmentationResult
    from BreastDCESegLib.study import DCEStudy

    scene = slicer_context.scene
    arrays = [np.full((8, 20, 20), 100.0), np.full((8, 20, 20), 150.0)]
    study = DCEStudy.from_arrays(arrays, spacing=(0.7, 0.7, 2.0), origin=(5, -3, 12), case_id="t1")
    nodes = mrml.add_study(scene, study)
    ai = np.zeros((8, 20, 20), np.uint8)
    ai[2:6, 5:12, 5:12] = 1
    ai[7, 18, 18] = 1                          # a false-positive island
    seg = mrml.result_to_segmentation(SegmentationResult(tumor=study.image_like(ai, np.uint8)), nodes.pre)
    clock = FakeClock()
    session = TimingSession("t1", "ai_refine", clock=clock, ai_seconds=30.0)
    observer = SegmentationObserver(session, seg).attach()
    editor = mrml.SegmentEditorSession(seg, nodes.pre)
    session.start()
    clock.advance(8)
    editor.keep_largest_island()
    clock.advance(100)                         # the reader went away
    editor.margin(0.8)
    clock.advance(12)
    with observer.ignoring():                  # programmatic change: not an edit
        mrml.set_segment(seg, "Tumor", editor.array())
    clock.advance(3)
    record = session.stop(refined=editor.array(), ai=ai, spacing=study.spacing)
    assert record.edits == 2
    assert record.active_seconds == 8 + 30 + 15          # the 100 s away counts as the 30 s threshold
    assert record.total_seconds == 83 and record.capped_gaps == 1 and record.idle_seconds == 70
    grown = 4 * 7 * 7 + 4 * 4 * 7                # +x and +y faces (0.7 mm), not the diagonals (0.99 mm)
    assert editor.array().sum() == grown
    assert record.dice_ai_refined == pytest.approx(2 * 196 / (197 + grown))
    observer.detach()
    session2 = TimingSession("t1", "manual", clock=clock)
    SegmentationObserver(session2, seg).attach()
    session2.start()
    editor.undo()                              # undo is an edit too
    assert session2.edits == 1 and session.edits == 2
