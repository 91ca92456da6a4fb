"""Case report and cohort page: ``breastdceseg segment --report`` writes ``<case>_report.html``
(self-contained: every image an embedded PNG, no external resource, no URL at all) and
``<case>_views.png`` (Slicer's views, the tumor's colour at the lesion centre); the page's
numbers are the JSON report's; the cohort page embeds one thumbnail per case.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("slicer", reason="the slicer-core wheel is not installed")

from PIL import Image  # noqa: E402

from BreastDCESegLib import cli, mrml, outputs, synth  # noqa: E402
from BreastDCESegLib.io.files import write_study_phases  # noqa: E402
from BreastDCESegLib.mrml import render  # noqa: E402
from BreastDCESegLib.report_cohort import THUMBNAIL_PX, write_cohort_report  # noqa: E402

pytestmark = pytest.mark.slow
TUMOR = mrml.SEGMENT_TYPES["Tumor"]["color"]
PHANTOM = dict(size=(160, 128, 24), spacing=(1.0, 1.0, 3.0), p_no_lesion=0.0, lesion_diameter_mm=(18.0, 28.0),
               n_post=3, orientation="axial", layout="single", p_multifocal=0.0)


class PageParser(HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def assert_self_contained(page: str) -> list[bytes]:
    """No external resource and no URL; returns the decoded bytes of every embedded image."""
    parser = parse(page)
    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|//[a-z]|file:|url\(|@import", outside_images, re.IGNORECASE)
    assert not [t for t, a in parser.tags if t in ("link", "script", "iframe", "object", "embed", "base")]
    images = []
    for tag, attrs in parser.tags:
        for name in ("src", "srcset", "href", "data", "poster", "background"):
            if name in attrs and tag != "a":
                assert attrs[name].startswith("data:image/png;base64,"), (tag, name, attrs[name][:60])
        if tag == "img":
            images.append(base64.b64decode(attrs["src"].split(",", 1)[1], validate=True))
    return images


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """``breastdceseg segment --input CASE --output OUT --report`` on a phantom study folder."""
    phantom = synth.make_phantom(seed=1003, **PHANTOM)
    root = tmp_path_factory.mktemp("report")
    case_folder = root / "case1"
    write_study_phases(phantom.study, case_folder, ext=".nii.gz")
    out = root / "out"
    code = cli.main(["segment", "--input", str(case_folder), "--output", str(out), "--model", "kinetic",
                     "--device", "cpu", "--report", "--quiet"])
    assert code == 0
    folder = outputs.output_paths(out, "case1")["report"].parent
    return {"phantom": phantom, "out": out, "folder": folder,
            "report": json.loads((folder / "case1.json").read_text(encoding="utf-8"))}


def test_segment_report_is_self_contained_with_four_embedded_views(segmented):
    folder = segmented["folder"]
    page = (folder / "case1_report.html").read_text(encoding="utf-8")
    images = assert_self_contained(page)
    assert len(images) == 4                                    # axial, sagittal, coronal, 3-D
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == (360, 360)
    text = " ".join(parse(page).text)
    tumor = segmented["report"]["tumor"]
    assert tumor["t_stage"] in text and "washout" in text
    assert f"{tumor['volume_ml']:.2f}" in text
    assert f"{tumor['lesions'][0]['longest_diameter_mm']:.1f}" in text
    assert "kinetic" in text and "weight-free kinetic method" in text    # the model and its status
    # The enhancement curve: one point per phase.
    assert len(re.findall(r"<circle ", page)) == segmented["phantom"].study.n_phases
    assert set(segmented["report"]["outputs"].values()) >= {"case1_report.html", "case1_views.png"}


def test_views_png_shows_the_tumor_colour_at_the_lesion(segmented):
    with Image.open(segmented["folder"] / "case1_views.png") as image:
        sheet = np.asarray(image.convert("RGB"))
    assert sheet.shape == (360, 4 * 360 + 3 * 4, 3)
    tinted = render.colour_match(sheet, TUMOR)
    for k in range(3):                       # each slice view is centred on the largest lesion
        x0 = k * (360 + 4)
        assert tinted[178:183, x0 + 178:x0 + 183].all(), k
        # 40 mm away (zoom 1.5 on a 160 mm field: 0.30 mm per pixel) is outside the 28 mm lesion.
        assert not tinted[178:183, x0 + 178 - 133:x0 + 183 - 133].any(), k
    assert tinted[:, 3 * 364:].sum() > 1000  # the closed surface in the 3-D view


def test_report_never_replaced_without_overwrite(segmented, capsys):
    page = segmented["folder"] / "case1_report.html"
    before = page.read_bytes()
    phantom_folder = segmented["out"].parent / "case1"
    cli.main(["segment", "--input", str(phantom_folder), "--output", str(segmented["out"]),
              "--model", "kinetic", "--device", "cpu", "--report", "--quiet"])
    assert "exist" in capsys.readouterr().err          # the existing case is named, kept as it was
    assert page.read_bytes() == before


def test_cohort_page_has_one_row_and_thumbnail_per_case(segmented, tmp_path):
    rows = [{"case": "case1", "status": "ok", "volume_ml": segmented["report"]["tumor"]["volume_ml"],
             "longest_diameter_mm": 30.0, "t_stage": "T2", "seconds": 1.5, "error": ""},
            {"case": "broken", "status": "failed", "error": "unreadable DICOM"}]
    path = write_cohort_report(segmented["out"], rows)
    page = path.read_text(encoding="utf-8")
    images = assert_self_contained(page)
    assert len(images) == 1
    with Image.open(io.BytesIO(images[0])) as thumb:
        assert thumb.size == (THUMBNAIL_PX, THUMBNAIL_PX)
        assert render.colour_match(np.asarray(thumb.convert("RGB")), TUMOR)[60:68, 60:68].all()
    parser = parse(page)
    assert len([t for t, _ in parser.tags if t == "tr"]) == 3   # header + one row per case
    links = [a["href"] for t, a in parser.tags if t == "a"]
    assert links == [(segmented["folder"] / "case1_report.html").relative_to(segmented["out"]).as_posix()]
    assert "unreadable DICOM" in " ".join(parser.text)


def test_batch_report_writes_case_reports_and_the_cohort_page(tmp_path):
    from BreastDCESegLib import batch

    root = tmp_path / "cohort"
    small = dict(PHANTOM, size=(96, 80, 16), spacing=(1.5, 1.5, 4.0))
    write_study_phases(synth.make_phantom(seed=1003, **small).study, root / "case1003", ext=".nii.gz")
    (root / "broken").mkdir()
    (root / "broken" / "notes.txt").write_text("not a study")
    out = tmp_path / "out"
    batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic", "--device", "cpu", "--report"])
    page = (out / "report.html").read_text(encoding="utf-8")
    images = assert_self_contained(page)
    assert len(images) == 1                            # a thumbnail for the segmented case, none for the failure
    with Image.open(io.BytesIO(images[0])) as thumb:
        assert render.colour_match(np.asarray(thumb.convert("RGB")), TUMOR)[60:68, 60:68].all()
    parser = parse(page)
    assert len([t for t, _ in parser.tags if t == "tr"]) == 3      # header + one row per case
    folder = outputs.output_paths(out, "case1003")["report"].parent
    assert len(assert_self_contained((folder / "case1003_report.html").read_text(encoding="utf-8"))) == 4
    assert (folder / "case1003_views.png").is_file()
    assert [a["href"] for t, a in parser.tags if t == "a"] == ["case1003/case1003_report.html"]
    assert "failed" in " ".join(parser.text)


def test_report_states_demo_weights_and_plots_phases_without_times():
    """No rendering: a result labelled with a demo-weights model and a study without acquisition
    times; the page warns about the demo weights, the curve's x axis is the phase number."""
    from BreastDCESegLib import report
    from BreastDCESegLib.results import SegmentationResult

    phantom = synth.make_phantom(seed=1003, **dict(PHANTOM, size=(64, 64, 12), spacing=(2.5, 2.5, 6.0)))
    study = phantom.study
    study.times = [None] * study.n_phases
    views = render.RenderedViews(images={"Red": np.zeros((32, 32, 3), np.uint8)}, centre_ras=(1.0, 2.0, 3.0))
    for model, status in (("resunet-demo", "demo weights — trained on synthetic phantoms, not for clinical use"),
                          ("no-such-model", "not in this machine's model registry")):
        page = report.case_report_html(study, SegmentationResult(tumor=phantom.tumor, model_id=model), views)
        text = " ".join(parse(page).text)
        assert status in text
        assert ("Model resunet-demo: demo weights" in text) == (model == "resunet-demo")   # the warning box
        assert len(assert_self_contained(page)) == 1
        assert ">phase</text>" in page and page.count("<circle ") == study.n_phases


def test_model_status_names_where_the_weights_come_from(tmp_path, monkeypatch):
    """Shipped demo weights, the weight-free method, a shipped entry waiting for its published
    checkpoint and a user-registry model are each named as what they are."""
    import shutil

    from BreastDCESegLib import report
    from BreastDCESegLib.models import registry

    shipped = json.loads(registry.DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = dict(next(m for m in shipped["models"] if m["id"] == "resunet-demo"), demo=False)
    shutil.copy(registry.DEFAULT_PATH.parent / entry["weights"]["path"], tmp_path / entry["weights"]["path"])
    user = tmp_path / "models.json"
    user.write_text(json.dumps({"models": [dict(entry, id="my-resunet"),
                                           dict(entry, id="their-resunet", origin="imported")]}), encoding="utf-8")
    monkeypatch.setenv("BREASTDCESEG_USER_MODELS", str(user))
    assert report.model_status("resunet-demo")["status"].startswith("demo weights")
    assert report.model_status("kinetic")["status"].startswith("weight-free")
    assert report.model_status("zhang2023-patterns")["status"].startswith("no weights here")
    assert report.model_status("my-resunet")["status"] == f"user weights (user registry {tmp_path})"
    assert report.model_status("their-resunet")["status"] == f"imported weights (user registry {tmp_path})"
