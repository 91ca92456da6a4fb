"""Phase times of a MAMA-MIA case from the release's clinical table (``clinical_and_imaging_info.xlsx``,
sheet ``dataset_info``, column ``acquisition_times``): the public release keeps them nowhere else, and a
study without times is read with assumed ones."""

import os
import sys

import pytest

from BreastDCESegLib import kinetics
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.io import mamamia, read_study
from test_io_mamamia import make_case

openpyxl = pytest.importorskip("openpyxl")

FAST = [0.0, 38.0, 76.0, 114.0, 152.0, 190.0, 228.0, 266.0]  # eight phases at 38 s frames (sagittal-uni-like)


def write_table(root, rows, name="clinical_and_imaging_info.xlsx", sheet="dataset_info"):
    """The release's table: a first sheet that is not the dataset's, then ``dataset_info``."""
    book = openpyxl.Workbook()
    book.active.title = "notes"
    book.active.append(["patient_id", "acquisition_times"])  # a decoy: the reader must take dataset_info
    book.active.append(["DUKE_002", "[0, 1, 2]"])
    ws = book.create_sheet(sheet)
    ws.append(["patient_id", "dataset", "acquisition_times", "pcr"])
    for pid, times in rows:
        ws.append([pid, pid.split("_")[0].lower(), times, 1])
    book.save(root / name)
    return root / name


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "MAMA-MIA"
    mamamia.write_case(root, "DUKE_002", make_case(4, seed=1, times=None)[0])
    mamamia.write_case(root, "ispy1_1003", make_case(3, seed=2, times=None)[0])
    mamamia.write_case(root, "NACT_01", make_case(4, seed=3, times=None)[0])
    assert not (root / mamamia.TIMINGS_FILE).exists()
    return root


def test_times_come_from_the_dataset_info_sheet(root):
    write_table(root, [("DUKE_002", "[0, 97, 194, 291]"), ("ISPY1_1003", "[0.0, 150.5, 420.25]"), ("NACT_01", None)])
    study, _ = mamamia.read_case(root, "DUKE_002")
    assert study.times == [0.0, 97.0, 194.0, 291.0]
    assert study.metadata["times_source"] == "clinical_and_imaging_info.xlsx"
    lower, _ = mamamia.read_case(root, "ispy1_1003")  # the table's ids are upper case, the folders may not be
    assert lower.times == [0.0, 150.5, 420.25]
    empty, _ = mamamia.read_case(root, "NACT_01")  # an empty cell: no times
    assert empty.times == [None] * 4 and empty.metadata["times_source"] is None
    assert mamamia.read_clinical_times(root) == {"DUKE_002": [0.0, 97.0, 194.0, 291.0],
                                                 "ISPY1_1003": [0.0, 150.5, 420.25]}


def test_timings_json_wins_and_a_given_list_wins_over_both(root):
    write_table(root, [("DUKE_002", "[0, 97, 194, 291]")])
    (root / mamamia.TIMINGS_FILE).write_text('{"DUKE_002": [0, 60, 120, 180]}')
    study, _ = mamamia.read_case(root, "DUKE_002")
    assert study.times == [0.0, 60.0, 120.0, 180.0] and study.metadata["times_source"] == "timings.json"
    given, _ = mamamia.read_case(root, "DUKE_002", times=[0, 10, 20, 30])
    assert given.times == [0.0, 10.0, 20.0, 30.0] and given.metadata["times_source"] == "given"


def test_a_csv_of_the_sheet_is_read_the_same(root):
    (root / "clinical_and_imaging_info.csv").write_text(
        'patient_id,acquisition_times\nDUKE_002,"[0, 97, 194, 291]"\nISPY1_1003,\n', encoding="utf-8")
    study, _ = mamamia.read_case(root, "DUKE_002")
    assert study.times == [0.0, 97.0, 194.0, 291.0]
    assert study.metadata["times_source"] == "clinical_and_imaging_info.csv"


def test_times_that_do_not_fit_the_case_are_left_out_with_a_warning(root):
    write_table(root, [("DUKE_002", "[0, 97, 194]"), ("ISPY1_1003", "[0, 150, 150]")])
    study, _ = mamamia.read_case(root, "DUKE_002")
    assert study.times == [None] * 4
    assert any("gives 3 acquisition times for 'DUKE_002' but the case has 4 phase files" in w
               for w in study.metadata["warnings"])
    flat, _ = mamamia.read_case(root, "ispy1_1003")
    assert flat.times == [None] * 3 and any("do not increase" in w for w in flat.metadata["warnings"])


def test_unreadable_cells_and_a_table_without_the_columns(root, caplog):
    write_table(root, [("DUKE_002", "not a list"), ("ISPY1_1003", "[0, nan, 3]"), ("NACT_01", "[0]")])
    assert mamamia.read_clinical_times(root) == {}
    os.remove(root / "clinical_and_imaging_info.xlsx")
    book = openpyxl.Workbook()
    book.active.title = "dataset_info"
    book.active.append(["patient_id", "age"])
    book.save(root / "clinical_and_imaging_info.xlsx")
    assert mamamia.read_clinical_times(root) == {}
    assert "no patient_id and acquisition_times columns" in caplog.text


def test_an_edited_table_is_read_again(root):
    path = write_table(root, [("DUKE_002", "[0, 97, 194, 291]")])
    assert mamamia.read_clinical_times(root)["DUKE_002"][1] == 97.0
    write_table(root, [("DUKE_002", "[0, 90, 180, 270]")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later version of the file
    assert mamamia.read_clinical_times(root)["DUKE_002"][1] == 90.0


def test_a_damaged_table_is_refused_and_without_openpyxl_the_case_is_read_without_times(root, monkeypatch):
    (root / "clinical_and_imaging_info.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(BadInputError, match="could not be read as the MAMA-MIA clinical table"):
        mamamia.read_case(root, "DUKE_002")
    write_table(root, [("DUKE_002", "[0, 97, 194, 291]")])
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    path = root / "clinical_and_imaging_info.xlsx"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    study, _ = mamamia.read_case(root, "DUKE_002")  # the case is still read, without the table's times
    assert study.times == [None] * 4
    assert any("needs openpyxl (pip install openpyxl), or save its 'dataset_info' sheet as "
               "clinical_and_imaging_info.csv" in w for w in study.metadata["warnings"])


def test_a_fast_protocol_is_read_by_its_table_times_not_assumed_ones(tmp_path):
    """Eight phases at 38 s frames: with the table's times the curves are read from the phase nearest 2 min
    (phase 3, 114 s); without them the phases are assumed spread over 6 minutes and phase 2 is taken."""
    root = tmp_path / "MAMA-MIA"
    mamamia.write_case(root, "ISPY2_100899", make_case(8, seed=4, times=None)[0])
    without = read_study(root / "images" / "ISPY2_100899")
    assert without.times == [None] * 8 and kinetics.initial_phase(without) == 2
    write_table(root, [("ISPY2_100899", str([int(t) for t in FAST]))])
    study = read_study(root / "images" / "ISPY2_100899")  # the case folder alone: its root's table is found
    assert study.times == FAST and kinetics.initial_phase(study) == 3
    assert read_study(root).times == FAST  # the root of a one-case folder


def test_segment_on_a_release_root_reports_the_table_times(tmp_path):
    """``breastdceseg segment`` on a MAMA-MIA root whose times are only in the clinical table: each case's
    ``<case>.json`` has the table's times and says where they came from."""
    import json

    from BreastDCESegLib import cli

    root = tmp_path / "MAMA-MIA"
    assert cli.main(["phantom", "--output", str(root), "--n", "2", "--seed", "700", "--size", "64", "64", "24",
                     "--phases", "4"]) == 0
    written = json.loads((root / mamamia.TIMINGS_FILE).read_text())
    os.remove(root / mamamia.TIMINGS_FILE)
    write_table(root, [(case.upper(), str(times)) for case, times in written.items()])
    pred = tmp_path / "pred"
    assert cli.main(["segment", "--input", str(root), "--output", str(pred), "--model", "kinetic", "--quiet"]) == 0
    for case, times in written.items():
        report = json.loads((pred / case / f"{case}.json").read_text())
        assert report["phase_times_s"] == pytest.approx(times) and len(times) == 4
        assert report["phase_times_source"] == "clinical_and_imaging_info.xlsx"
