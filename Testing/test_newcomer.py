"""What a new user meets first: one "longest diameter" everywhere, an honest curve type with
one post-contrast phase, a help text for every option, and a one-line answer (exit code 2)
when the deep-learning packages are missing."""

import argparse
import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import batch, cli, clinical, console, environment, training
from BreastDCESegLib.models import registry as reg
from BreastDCESegLib.outputs import case_report
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import DCEStudy

UNDETERMINED = "undetermined (one post-contrast phase)"


def _sphere_and_speck(shape=(40, 64, 128), spacing=(1.0, 1.0, 1.0)):
    """A 29 mm sphere centred at x=20 and a one-voxel speck at x=110 (same row and slice)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    mask = ((x - 20) ** 2 + (y - 32) ** 2 + (z - 20) ** 2) <= 14.5 ** 2
    mask[20, 32, 110] = True
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing)
    return mask, image


# ----------------------------------------------------------------------------- diameter
def test_longest_diameter_is_the_largest_lesions_and_agrees_with_t_stage():
    _, image = _sphere_and_speck()
    summary = clinical.summarize(image)
    assert summary["lesion_count"] == 2
    assert summary["longest_diameter_mm"] == pytest.approx(29.0, abs=1.0)   # measured 28.0 (voxel centres)
    assert summary["t_stage"] == "T2"                                       # from that same diameter
    assert summary["extent_mm"] == pytest.approx(110 - 6, abs=0.5)          # sphere's far edge to the speck
    assert "largest lesion" in summary["t_stage_basis"]
    assert clinical.diameters(image) == {"longest_diameter_mm": pytest.approx(summary["longest_diameter_mm"], abs=1e-3),
                                         "extent_mm": pytest.approx(summary["extent_mm"], abs=1e-3), "lesion_count": 2}
    line = console.tumor_line(summary)
    assert f"longest diameter {summary['longest_diameter_mm']:.1f} mm" in line
    assert f"largest of 2 lesions; extent of all {summary['extent_mm']:.1f} mm" in line and line.endswith("T2")
    row = batch._row_from_report("c1", "ok", {"tumor": summary}, 1.0)           # one summary.csv row
    assert set(batch.SUMMARY_FIELDS) == set(row)
    assert row["longest_diameter_mm"] == pytest.approx(summary["longest_diameter_mm"], abs=1e-3)
    assert row["extent_mm"] == pytest.approx(summary["extent_mm"], abs=1e-3)
    assert row["lesion_count"] == 2 and row["t_stage"] == "T2"


# ----------------------------------------------------------------------------- curve type
def _study(n_post):
    """A 40 x 40 x 12 study: a washout cube (x 10..20) in flat tissue, ``n_post`` post phases."""
    pre = np.full((12, 40, 40), 100.0, np.float32)
    phases = [pre]
    for k in range(n_post):
        post = pre + 2.0
        post[3:9, 10:20, 10:20] = 300.0 - 40.0 * k        # early 200 % then falling: washout
        phases.append(post)
    return DCEStudy.from_arrays(phases, spacing=(1.0, 1.0, 2.0), times=[0.0, 90.0, 180.0][: n_post + 1])


def test_one_post_contrast_phase_gives_an_undetermined_curve_type_and_a_warning():
    one = _study(1)
    mask = np.zeros(one.shape, np.uint8)
    mask[3:9, 10:20, 10:20] = 1
    result = SegmentationResult(tumor=one.image_like(mask, np.uint8), model_id="kinetic", device="cpu",
                                seconds={"total": 1.0}, warnings=[])
    report = case_report(one, result)
    lesion = report["tumor"]["lesions"][0]
    assert lesion["dominant_curve_type"] == UNDETERMINED
    assert lesion["mean_ser"] is None and lesion["curve_type_fractions"] is None
    assert lesion["enhancing_fraction"] == 1.0 and lesion["mean_percent_enhancement"] == pytest.approx(200.0)
    assert any(UNDETERMINED in w for w in report["warnings"])
    json.dumps(report, allow_nan=False)
    from BreastDCESegLib import kinetics

    assert kinetics.dominant_curve_type(one, mask) == UNDETERMINED
    two = _study(2)                                       # a delayed phase: a real BI-RADS type, no warning
    summary = clinical.summarize(two.image_like(mask, np.uint8), two)
    assert summary["lesions"][0]["dominant_curve_type"] == "washout" and summary["warnings"] == []
    assert summary["lesions"][0]["curve_type_fractions"]["washout"] == 1.0


# ----------------------------------------------------------------------------- help
def _serve_parser():
    from BreastDCESegLib.server.main import build_parser

    return build_parser()


# sub-commands with their own parser
DELEGATED = {"train": training.parser, "batch": batch.build_parser, "serve": _serve_parser}


def _subparsers(parser):
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _parsers(parser=None, prefix=""):
    """Every parser a user reaches, by its command line (``"models import"``), nested ones too."""
    found = {}
    for sub in _subparsers(parser or cli.build_parser()):
        assert all(choice.help for choice in sub._choices_actions), f"{prefix} sub-command without help"
        for name, child in sub.choices.items():
            child = DELEGATED[name]() if not prefix and name in DELEGATED else child
            if child.add_help:
                found[(prefix + " " + name).strip()] = child
                found.update(_parsers(child, (prefix + " " + name).strip()))
    return found


def test_every_option_of_every_subcommand_has_help_and_shows_its_default():
    parsers = _parsers()
    assert {"demo", "phantom", "segment", "evaluate", "models", "models import", "train", "batch",
            "serve"} <= set(parsers)
    checked = 0
    for name, parser in parsers.items():
        text = parser.format_help()
        for action in parser._actions:
            if "-h" in action.option_strings or isinstance(action, argparse._SubParsersAction):
                continue
            checked += 1
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest} has no help"
            shown = action.default is not None and action.default is not False and not action.required
            if shown and action.option_strings:
                assert "(default" in HelpText(parser, action).text, f"{name} {action.option_strings}"
        assert "%(default)" not in text and "(default: None)" not in text
    assert checked >= 60          # every option of the parsers above looked at
    demo = " ".join(parsers["demo"].format_help().split())   # as printed, without the line wrapping
    assert "(default: 256 256 80)" in demo and "(default: 20231)" in demo


class HelpText:
    """The help of one action as ``--help`` prints it."""

    def __init__(self, parser, action):
        formatter = parser._get_formatter()
        self.text = formatter._expand_help(action) if action.help else ""


# ----------------------------------------------------------------------------- missing torch/MONAI
@pytest.fixture
def no_deep_stack(monkeypatch):
    """This process behaves as if torch, MONAI and safetensors were not installed."""
    real = environment.is_installed
    monkeypatch.setattr(environment, "is_installed", lambda name: name not in environment.DEEP_PACKAGES and real(name))


def test_without_torch_a_network_stops_with_one_line_and_exit_2(no_deep_stack, tmp_path, capsys):
    code = cli.main(["segment", "--input", str(tmp_path / "absent"), "--output", str(tmp_path / "out"),
                     "--model", "resunet-demo"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "resunet-demo" in err and "torch, monai" in err
    assert "pip install 'breastdceseg[deep]'" in err and "--model kinetic" in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["train", "--family", "resunet", "--out", str(tmp_path / "run")]) == 2
    assert "Training needs torch" in capsys.readouterr().err
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read")
    assert cli.main(["models", "import", str(weights), "--family", "resunet", "--id", "mine"]) == 2
    assert "Importing a model (its weights are read with torch) needs torch" in capsys.readouterr().err
    table = reg.format_model_table(reg.load_registry())
    rows = {line.split()[0].lstrip("*"): line for line in table.splitlines()[2:7]}
    assert " yes " in rows["kinetic"] and "needs torch, monai, safetensors" in rows["resunet-demo"]
    assert "pip install 'breastdceseg[deep]'" in table
    from BreastDCESegLib.demo import _choose_model

    assert _choose_model(None) == (None, [])             # the default, the kinetic method, needs no torch
    assert reg.load_registry().get().is_kinetic


def test_with_the_deep_stack_every_shipped_model_runs_here():
    registry = reg.load_registry()
    assert all(environment.runs_here(spec) == "yes" for spec in registry.list())
    environment.require_model_id(None)
    environment.require_model_id("kinetic")


def test_every_module_of_the_package_imports():
    """The quick subset touches every module: each one imports (no syntax error, no import cycle),
    including those whose behaviour only the slow tests run."""
    import importlib
    import pkgutil

    import BreastDCESegLib

    names = [m.name for m in pkgutil.walk_packages(BreastDCESegLib.__path__, "BreastDCESegLib.")]
    assert len(names) > 60
    for name in names:
        importlib.import_module(name)
