"""Motion estimates on disk (motion_store.py): a run in a fresh process reads the estimates an
earlier one stored and gives the same realigned study without registering; unreadable or foreign
files, a read-only store, another estimator and a replaced one are never trusted or written."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import motion, motion_store
from BreastDCESegLib.synth import make_phantom


@pytest.fixture(scope="module")
def moved():
    return make_phantom(seed=3, size=(64, 64, 24), motion_vox=(1.5, 1.5), orientation="axial", n_post=2,
                        p_no_lesion=0.0)


@pytest.fixture()
def store(tmp_path):
    """A fresh store in ``tmp_path/store``; the tests' own store (conftest.py) put back afterwards."""
    motion.clear()
    with motion_store.using(tmp_path / "store"):
        yield tmp_path / "store"
    motion.clear()


@pytest.fixture()
def registrations(monkeypatch):
    """The studies :func:`motion._estimates` registered (each call: one study's phases)."""
    calls = []
    real = motion._estimates
    monkeypatch.setattr(motion, "_estimates", lambda study, *a: calls.append(study.n_phases) or real(study, *a))
    return calls


def _arrays(study):
    return [sitk.GetArrayFromImage(image) for image in study.phases]


def test_a_fresh_process_reads_the_stored_estimates_and_realigns_alike(moved, store, registrations):
    first, info = motion.correct(moved.study)
    files = sorted(store.glob("*.json"))
    assert registrations == [3] and len(files) == 1 and not info["remembered"] and info["corrected"] == [1, 2]
    written = json.loads(files[0].read_text())
    assert written["estimator"] == motion_store.estimator_fingerprint() and len(written["estimates"]) == 2
    motion.clear()  # as a new process: nothing remembered in memory
    again, info_again = motion.correct(moved.study)
    assert registrations == [3] and info_again == {**info, "remembered": True}
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(first), _arrays(again)))
    assert not list(store.glob(".writing-*"))  # written whole: no temporary file left


def test_unreadable_or_foreign_files_are_registered_again_and_replaced(moved, store, registrations):
    _, info = motion.correct(moved.study)
    (path,) = store.glob("*.json")
    for bad in ("{not json", json.dumps({"estimates": [[[0.0] * 6, None]]}),  # one phase of two
                json.dumps({"estimates": [[[0.0] * 5, None], [[0.0] * 6, None]]}), "[]"):
        path.write_text(bad)
        motion.clear()
        assert motion.correct(moved.study)[1] == info
    assert registrations == [3] * 5
    assert len(json.loads(path.read_text())["estimates"]) == 2  # the last run replaced the bad file


def test_read_only_other_estimator_and_replaced_estimator_store_nothing(moved, store, registrations, monkeypatch,
                                                                         tmp_path):
    motion_store.use(store, read_only=True)
    motion.correct(moved.study)
    assert registrations == [3] and not store.exists()
    motion_store.use(store)
    motion.clear()
    motion.correct(moved.study)
    assert len(list(store.glob("*.json"))) == 1
    monkeypatch.setattr(motion_store, "estimator_fingerprint", lambda: "other motion.py")
    motion.clear()
    motion.correct(moved.study)  # the stored file is another estimator's: registered, stored beside it
    assert registrations == [3, 3, 3] and len(list(store.glob("*.json"))) == 2
    still = np.zeros(6)
    monkeypatch.setattr(motion, "estimate_motion", lambda fixed, moving, seed=7: still)
    motion.clear()
    _, info = motion.correct(moved.study)  # a replaced estimator: neither read nor written
    assert info["corrected"] == [] and registrations == [3, 3, 3, 3] and len(list(store.glob("*.json"))) == 2


def test_the_environment_names_the_store(moved, store, registrations, monkeypatch, tmp_path):
    folder = tmp_path / "from-env"
    monkeypatch.setenv(motion_store.ENV, str(folder))
    monkeypatch.delenv(motion_store.READ_ONLY_ENV, raising=False)
    motion_store.reset()
    assert motion_store.location() == (folder, False)
    motion.correct(moved.study)
    assert len(list(folder.glob("*.json"))) == 1
    monkeypatch.setenv(motion_store.READ_ONLY_ENV, "1")
    assert motion_store.location() == (folder, True)
    motion_store.use(None)  # off in this process whatever the environment says
    assert motion_store.location() == (None, False)
    motion.clear()
    motion.correct(moved.study)
    assert registrations == [3, 3]
    with motion_store.using(tmp_path / "inner", read_only=True):
        assert motion_store.location() == (tmp_path / "inner", True)
    assert motion_store.location() == (None, False)  # the choice before the block
