"""The package as an index would serve it: the wheel, installed into a fresh virtual
environment WITHOUT the ``[deep]`` extra (no torch, MONAI or safetensors).

The fresh environment is made without pip (``python -m venv --without-pip``); the wheel is
installed into it by this environment's pip (``pip --python``), with no dependencies. Its
light dependencies are not downloaded again: a ``.pth`` file points at a folder of links to
exactly the distributions the wheel requires (without extras), found recursively from its
metadata in this environment, so torch, MONAI and safetensors cannot be imported there.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and runs the installed command a few times (~12 s)

ROOT = Path(__file__).resolve().parents[1]
DEEP = {"torch", "monai", "safetensors"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the package sources (the checkout's build/ stays untouched)."""
    src = tmp / "src"
    shutil.copytree(ROOT / "BreastDCESegLib", src / "BreastDCESegLib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    return next((tmp / "dist").glob("breastdceseg-*.whl"))


def _requirements(wheel: Path) -> list[str]:
    """The wheel's requirements that apply without extras."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    return [r.name for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _light_site(names: list[str], folder: Path) -> set[str]:
    """Links in ``folder`` to the installed files of ``names`` and their dependencies (no extras)."""
    from packaging.requirements import Requirement

    folder.mkdir()
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists() and not top.endswith(".pth"):
                (folder / top).symlink_to(source)
    return seen


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"BreastDCESegLib/models/shipped/models.json", "BreastDCESegLib/models/shipped/models.schema.json",
            "BreastDCESegLib/models/shipped/resunet-demo.safetensors"} <= names
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    closure = _light_site(_requirements(wheel), tmp / "light")
    assert not closure & DEEP, closure
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "light_dependencies.pth").write_text(str(tmp / "light") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BREASTDCESEG_MODELS")}
    env.update(HOME=str(tmp / "home"), OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    from BreastDCESegLib import synth
    from BreastDCESegLib.io.files import write_study_phases

    study = synth.make_phantom(seed=32, size=(64, 64, 24), n_post=2).study  # a 6.68 mL cancer
    write_study_phases(study, tmp / "study", ext=".nii.gz")
    return {"venv": venv, "python": python, "env": env, "tmp": tmp, "study": tmp / "study", "phantom": study}


def _run(wheel_env, *args, timeout=180):
    return subprocess.run(list(args), cwd=wheel_env["tmp"], env=wheel_env["env"], capture_output=True, text=True,
                          timeout=timeout)


def test_the_installed_wheel_imports_nothing_of_the_deep_stack(wheel_env):
    code = ("import importlib.util as u, BreastDCESegLib as b; "
            "print(b.__file__); print([m for m in ('torch', 'monai', 'safetensors') if u.find_spec(m)])")
    proc = _run(wheel_env, str(wheel_env["python"]), "-c", code)
    where, found = proc.stdout.splitlines()
    assert Path(where).is_relative_to(wheel_env["venv"]), where  # the wheel's copy, not the checkout
    assert found == "[]"


def test_the_default_kinetic_model_segments_from_the_wheel_and_a_network_says_what_to_install(wheel_env):
    tool = str(wheel_env["venv"] / "bin" / "breastdceseg")
    out = wheel_env["tmp"] / "out"
    ok = _run(wheel_env, tool, "segment", "--input", str(wheel_env["study"]), "--output", str(out), "--quiet")
    assert ok.returncode == 0, ok.stderr
    reports = list(out.rglob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["model"] == "kinetic" and report["tumor"]["volume_ml"] == pytest.approx(6.14, abs=0.2)
    assert "longest diameter" in ok.stdout and report["tumor"]["t_stage"] in ok.stdout

    default = _run(wheel_env, tool, "segment", "--input", str(wheel_env["study"]), "--output", str(out / "d"),
                   "--model", "resunet-demo")
    assert default.returncode == 2
    assert default.stderr.strip().count("\n") == 0 and "Traceback" not in default.stderr
    assert "pip install 'breastdceseg[deep]'" in default.stderr and "--model kinetic" in default.stderr
    assert not (out / "d").exists()

    models = _run(wheel_env, tool, "models")
    assert models.returncode == 0, models.stderr
    rows = {line.split()[0].lstrip("*"): line for line in models.stdout.splitlines() if line[:1] in (" ", "*") and line.strip()}
    assert " yes " in rows["kinetic"] and "needs torch, monai, safetensors" in rows["resunet-demo"]
    assert str(wheel_env["venv"]) in models.stdout  # the registry found as package data

    batch = _run(wheel_env, tool, "batch", "--input", str(wheel_env["study"]), "--output", str(out / "b"),
                 "--model", "resunet-demo")
    assert batch.returncode == 2 and "Traceback" not in batch.stderr
    assert "pip install 'breastdceseg[deep]'" in batch.stderr

    demo = _run(wheel_env, tool, "demo", "--output", str(out / "demo"), "--size", "64", "64", "24", "--seed", "31")
    assert demo.returncode == 0, demo.stderr
    assert "model: kinetic on cpu" in demo.stdout and "Demo weights" not in demo.stdout  # the default needs no torch


def test_the_worker_reports_a_missing_package_as_an_event(wheel_env):
    from BreastDCESegLib.runner import write_request

    request = write_request(wheel_env["phantom"], wheel_env["tmp"] / "job", "resunet-demo")
    proc = _run(wheel_env, str(wheel_env["python"]), "-m", "BreastDCESegLib.worker", str(request))
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    error = events[-1]
    assert error["event"] == "error" and error["kind"] == "missing-dependency" and "detail" not in error
    assert "pip install 'breastdceseg[deep]'" in error["message"]
