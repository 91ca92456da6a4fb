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
    return make_phantom(seed=3, size=(64, 64, 24), motion_vox=(1.5, 1.5), orientation="axial", n_post=1,
                        p_no_lesion=0.0)


@pytest.fixture()
def store(tmp_path):
    """A fresh store in ``tmp_path/store``; the tests' own store (conftest.py) put back afterwards."""
    motion.clear()
    with motion_store.using(tmp_path / "store"):
        yield tmp_path / "store"
    motion.clear()


# the estimate of every moved phase here (the estimator itself: test_motion.py); full-precision values, as the
# registration gives them, come back from the file bit for bit
SHIFT = (0.0, 0.0, 0.011780972450961723, 3.141592653589793, -2.0000000000000004, 0.7071067811865476)


@pytest.fixture()
def registrations(monkeypatch):
    """The studies whose phases were registered (each call: one study's phase count); the registration
    gives :data:`SHIFT` at once: these tests are of the store, not of the estimator."""
    calls = []

    def estimates(study, *args):
        calls.append(study.n_phases)
        return tuple((SHIFT, None) for _ in range(study.n_phases - 1))

    monkeypatch.setattr(motion, "_estimates", estimates)
    return calls


def _arrays(study):
    return [sitk.GetArrayFromImage(image) for image in study.phases]


def test_a_fresh_process_reads_the_stored_estimates_and_realigns_alike(moved, store, registrations):
    first, info = motion.correct(moved.study)
    files = sorted(store.glob("*.json"))
    assert registrations == [2] and len(files) == 1 and not info["remembered"] and info["corrected"] == [1]
    written = json.loads(files[0].read_text())
    assert written == {"estimator": motion_store.estimator_fingerprint(), "estimates": [[list(SHIFT), None]]}
    motion.clear()  # as a new process: nothing remembered in memory
    again, info_again = motion.correct(moved.study)
    assert registrations == [2] and info_again == {**info, "remembered": True}
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(first), _arrays(again)))
    assert not list(store.glob(".tmp-*"))  # written whole: no temporary file left


def test_unreadable_or_foreign_files_are_registered_again_and_replaced(moved, store, registrations):
    _, info = motion.correct(moved.study)
    (path,) = store.glob("*.json")
    for bad in ("{not json", json.dumps({"estimates": [[[0.0] * 6, None]] * 2}),  # two phases of one
                json.dumps({"estimates": [[[0.0] * 5, None]]}), "[]"):
        path.write_text(bad)
        motion.clear()
        assert motion.correct(moved.study)[1] == info
    assert registrations == [2] * 5
    assert len(json.loads(path.read_text())["estimates"]) == 1  # the last run replaced the bad file


def test_read_only_other_estimator_and_replaced_estimator_store_nothing(moved, store, registrations, monkeypatch,
                                                                         tmp_path):
    motion_store.use(store, read_only=True)
    motion.correct(moved.study)
    assert registrations == [2] and not store.exists()
    motion_store.use(store)
    motion.clear()
    motion.correct(moved.study)
    assert len(list(store.glob("*.json"))) == 1
    monkeypatch.setattr(motion_store, "estimator_fingerprint", lambda: "other motion.py")
    motion.clear()
    motion.correct(moved.study)  # the stored file is another estimator's: registered, stored beside it
    assert registrations == [2, 2, 2] and len(list(store.glob("*.json"))) == 2
    monkeypatch.setattr(motion, "estimate_motion", lambda fixed, moving, seed=7: np.zeros(6))
    motion.clear()
    motion.correct(moved.study)  # a replaced estimator: neither read nor written
    assert registrations == [2, 2, 2, 2] and len(list(store.glob("*.json"))) == 2


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
    assert registrations == [2, 2]
    with motion_store.using(tmp_path / "inner", read_only=True):
        assert motion_store.location() == (tmp_path / "inner", True)
    assert motion_store.location() == (None, False)  # the choice before the block
