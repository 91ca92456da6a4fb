"""Shared pytest set-up: the repository root on sys.path, small thread counts, and the
held-out phantoms that more than one test module segments (``held_out``)."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("BREASTDCESEG_TEST", "1")

# The motion estimates of the studies the tests segment in this process, made once and kept here
# (BreastDCESegLib/motion_store.py: keyed by the phase arrays, the grid and the estimator's code, so
# a change to motion.py or SimpleITK reads none of them and the phases are registered again). Read
# only; scripts/refresh_motion_estimates.sh writes them again. test_motion.py turns the store off.
MOTION_ESTIMATES = ROOT / "Testing" / "data" / "motion_estimates"
MOTION_ESTIMATES_WRITE = os.environ.get("BREASTDCESEG_TEST_WRITE_MOTION_ESTIMATES") == "1"


# scripts/test.sh runs whole files in two processes (pytest-xdist, --dist loadfile), each taking the
# next file when it has fewer than two waiting. The files that take longest go first, so that neither
# process is left running a long file at the end while the other idles: FILE_SECONDS holds each file's
# seconds of a whole run (a file not in it counts as 0 and goes last, in collection order). A run with
# BREASTDCESEG_TEST_RECORD_SECONDS=1 writes it again (from its own files' durations, added to the others').
FILE_SECONDS = ROOT / "Testing" / "data" / "file_seconds.json"
RECORD_SECONDS = os.environ.get("BREASTDCESEG_TEST_RECORD_SECONDS") == "1"
_measured: dict = {}


def pytest_configure(config):
    from BreastDCESegLib import motion_store

    motion_store.use(MOTION_ESTIMATES, read_only=not MOTION_ESTIMATES_WRITE)


def _file_seconds() -> dict:
    import json

    try:
        return {str(k): float(v) for k, v in json.loads(FILE_SECONDS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    seconds = _file_seconds()
    first: dict = {}
    for i, item in enumerate(items):
        first.setdefault(_file_of(item.nodeid), i)
    items.sort(key=lambda item: (-seconds.get(_file_of(item.nodeid), 0.0), first[_file_of(item.nodeid)]))


def pytest_runtest_logreport(report):
    if RECORD_SECONDS:
        _measured[_file_of(report.nodeid)] = _measured.get(_file_of(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session):
    if RECORD_SECONDS and _measured and not hasattr(session.config, "workerinput"):  # the main process only
        import json

        seconds = {**_file_seconds(), **{k: round(v, 1) for k, v in _measured.items()}}
        FILE_SECONDS.write_text(json.dumps(dict(sorted(seconds.items(), key=lambda kv: -kv[1])), indent=1) + "\n")


HELD_OUT_SIZE = (128, 128, 48)     # the default generator's size (seeds 5000-5099: never used in training)
HELD_OUT_SHARED = (5003,)          # the axial phantom of test_inference and test_orientation


class HeldOut:
    """Held-out phantoms of the default generator, each motion-corrected once, and the shipped
    models' segmentations of them (the shipped registry, CPU, the default options otherwise),
    each made once with its progress events.

    ``inference.segment`` registers the phases before any model runs; the corrected study is
    what it gives every model, so the models run on it with ``motion_correction`` off, as
    ``segment`` would with it on. Phantom 5003 and its runs are kept for the session (the
    every-shipped-model test, the Dice evaluation and the axis-order tests all use them);
    any other phantom is kept only until the next one is asked for.
    """

    def __init__(self):
        self._cases, self._runs, self._registry = {}, {}, None

    @property
    def registry(self):
        if self._registry is None:
            from BreastDCESegLib.models.registry import load_registry

            self._registry = load_registry(include_user=False)
        return self._registry

    def phantom(self, seed: int):
        """Phantom ``seed`` of the default generator (``HELD_OUT_SIZE``)."""
        from BreastDCESegLib import synth

        if seed not in self._cases:
            for old in [s for s in self._cases if s not in HELD_OUT_SHARED]:
                del self._cases[old]
                self._runs = {key: run for key, run in self._runs.items() if key[0] != old}
            self._cases[seed] = {"phantom": synth.make_phantom(seed=seed, size=HELD_OUT_SIZE)}
        return self._cases[seed]["phantom"]

    def case(self, seed: int):
        """(phantom, its motion-corrected study)."""
        from BreastDCESegLib import motion

        phantom = self.phantom(seed)
        case = self._cases[seed]
        if "study" not in case:
            case["study"] = motion.apply(phantom.study)[0]
        return phantom, case["study"]

    def segmented(self, seed: int, model_id: str):
        """(``inference.segment`` result of ``model_id`` on phantom ``seed``, its progress events)."""
        from BreastDCESegLib import inference

        study = self.case(seed)[1]
        if (seed, model_id) not in self._runs:
            events = []
            result = inference.segment(study, model_id, device="cpu", registry=self.registry,
                                       progress=lambda s, f, m="": events.append((s, f)),
                                       options={"motion_correction": False})
            self._runs[seed, model_id] = (result, events)
        return self._runs[seed, model_id]


@pytest.fixture(scope="session")
def held_out() -> HeldOut:
    return HeldOut()


def write_splits(root, train: list, test: list) -> None:
    """``<root>/train_test_splits.csv`` as the MAMA-MIA release writes it (the shorter column padded)."""
    import csv

    from BreastDCESegLib.io import mamamia

    with open(root / mamamia.SPLITS_FILE, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["train_split", "test_split"])
        for i in range(max(len(train), len(test))):
            w.writerow([train[i] if i < len(train) else "", test[i] if i < len(test) else ""])


@pytest.fixture()
def mamamia_release(tmp_path):
    """Case folders (names only: planning reads no image) of three datasets, as the release names them."""
    root = tmp_path / "MAMA-MIA"
    ids = [f"DUKE_{i:03d}" for i in range(1, 9)] + [f"ISPY1_{1000 + i}" for i in range(4)] + \
          [f"NACT_{i:02d}" for i in range(1, 5)]
    for cid in ids:
        (root / "images" / cid).mkdir(parents=True)
        (root / "images" / cid / f"{cid.lower()}_0000.nii.gz").write_bytes(b"")
        (root / "images" / cid / f"{cid.lower()}_0001.nii.gz").write_bytes(b"")
    write_splits(root, [c.lower() for c in ids if c not in ("DUKE_008", "NACT_04")], ["duke_008", "nact_04"])
    return root
