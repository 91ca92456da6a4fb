"""The HTTP inference server, started for real on 127.0.0.1 and driven by the real client.

Phantom studies (small volumes, kinetic model) go through upload, the queue, a warm worker and
the download; refused uploads must leave nothing outside (or inside) the job directories.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import SimpleITK as sitk

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from server_process import running_server  # noqa: E402

from BreastDCESegLib import inference, metrics, synth  # noqa: E402
from BreastDCESegLib import runner as rn  # noqa: E402
from BreastDCESegLib.remote import RemoteRunner, ServerClient, run_segmentation_remote  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHANTOM = {"size": (64, 64, 24), "n_post": 3, "p_no_lesion": 0.0, "p_unknown_times": 0.0}
SLEEP = {"debug_sleep_s": 30, "debug_sleep_at": ["segment"]}


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=11, **PHANTOM)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("server"), workers=1, max_queue=2,
                        extra=("--max-upload-mb", "3")) as s:
        yield s


@pytest.fixture
def client(server):
    c = ServerClient(server.url, server.token)
    yield c
    c.close()


def _phase_files(study, folder: Path) -> list:
    request = rn.write_request(study, folder, "kinetic")
    return [folder / p for p in json.loads(request.read_text())["phases"]]


def _post(server, files, params=None, token=None):
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return httpx.post(server.url + "/v1/jobs", files=files, data={"params": json.dumps(params or {"model": "kinetic"})},
                      headers=headers, timeout=30)


def _jobs_left(server) -> list:
    return sorted(p.name for p in server.jobs_dir.iterdir())


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_health_version_models_and_token(server, client):
    assert httpx.get(server.url + "/v1/health").json()["status"] == "ok"  # no token needed
    assert client.version()["api"] == 1
    models = client.models()
    assert "kinetic" in [m["id"] for m in models["models"]] and models["default"]
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic abc"}):
        for method, path in (("GET", "/v1/version"), ("GET", "/v1/models"), ("POST", "/v1/jobs"),
                             ("GET", "/v1/jobs/abc"), ("DELETE", "/v1/jobs/abc")):
            r = httpx.request(method, server.url + path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["WWW-Authenticate"] == "Bearer"


def test_remote_result_equals_local_and_job_deleted(server, client, phantom):
    events = []
    remote = run_segmentation_remote(client, phantom.study, "kinetic", on_event=events.append)
    local = inference.segment(phantom.study, "kinetic", device="cpu")
    assert metrics.dice(remote.tumor_array() > 0, local.tumor_array() > 0) == 1.0
    assert np.array_equal(remote.tumor_array(), local.tumor_array())
    assert local.tumor_array().sum() == 187  # a lesion was found: the comparison is not of two empty masks
    assert metrics.dice(remote.tumor_array() > 0, sitk.GetArrayFromImage(phantom.tumor) > 0) == pytest.approx(0.910, abs=0.01)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and "progress" in kinds
    assert set(events[-1]["outputs"]) == {"label", "segmentation", "probability", "breast", "result"}
    assert remote.extra["report"]["tumor"]["volume_ml"] == pytest.approx(
        float(local.tumor_array().sum()) * phantom.study.voxel_volume_mm3 / 1000, rel=1e-6)
    _wait_for(lambda: _jobs_left(server) == [])  # deleted once the client fetched the outputs


@pytest.mark.slow
def test_dicom_zip_study(server, client, phantom, tmp_path):
    folder = synth.write_dicom(phantom, tmp_path / "dicom")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            z.write(f, f.relative_to(folder).as_posix())
    job = client.submit(dicom_zip=archive, params={"model": "kinetic"})
    final = [e for e in client.events(job["job_id"])][-1]
    assert final["event"] == "done", final
    label = tmp_path / "label.nrrd"
    client.download(job["job_id"], "label", label)
    local = inference.segment(phantom.study, "kinetic", device="cpu")
    assert metrics.dice(sitk.GetArrayFromImage(sitk.ReadImage(str(label))) > 0, local.tumor_array() > 0) > 0.99
    client.delete(job["job_id"])


def test_oversize_upload_is_413(server):
    big = io.BytesIO(b"\0" * (4 << 20))
    r = _post(server, [("phases", ("a.nrrd", big)), ("phases", ("b.nrrd", io.BytesIO(b"x")))])
    assert r.status_code == 413 and "larger than the server accepts" in r.json()["detail"]
    assert _jobs_left(server) == []


def _zip(members: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("members, status, words", [
    ({"ok.dcm": b"x", "../../evil.txt": b"owned"}, 422, "path traversal"),
    ({"/etc/evil.txt": b"owned"}, 422, "path traversal"),
    ({"bomb.dcm": b"\0" * (24 << 20)}, 413, "zip bomb"),
    ({"notes.txt": b"this is not DICOM"}, 422, "not a DICOM file"),
])
def test_unsafe_or_wrong_zips_are_refused(server, tmp_path, members, status, words):
    r = _post(server, [("dicom_zip", ("study.zip", _zip(members)))])
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert _jobs_left(server) == []
    assert not any(p.name == "evil.txt" for p in server.work_dir.parent.rglob("*"))
    assert sorted(p.name for p in server.work_dir.iterdir()) == ["jobs"]


def test_non_image_and_mismatched_phases_are_refused(server, phantom, tmp_path):
    phases = _phase_files(phantom.study, tmp_path)
    r = _post(server, [("phases", ("a.nrrd", b"not an image at all")), ("phases", ("b.nrrd", phases[1].read_bytes()))])
    assert r.status_code == 422 and "Phase 0 is not an NRRD file" in r.json()["detail"]
    r = _post(server, [("phases", ("a.txt", b"hello")), ("phases", ("b.nrrd", phases[1].read_bytes()))])
    assert r.status_code == 415 and "not NRRD" in r.json()["detail"]
    detached = b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: /etc/passwd\n\n"
    r = _post(server, [("phases", ("a.nrrd", detached)), ("phases", ("b.nrrd", phases[1].read_bytes()))])
    assert r.status_code == 422 and "another data file" in r.json()["detail"]
    other = sitk.Image(40, 64, 24, sitk.sitkFloat32)
    sitk.WriteImage(other, str(tmp_path / "other.nrrd"))
    r = _post(server, [("phases", ("a.nrrd", phases[0].read_bytes())), ("phases", ("b.nrrd", (tmp_path / "other.nrrd").read_bytes()))])
    assert r.status_code == 422 and "Phase 1 is on another grid" in r.json()["detail"] and "size [40, 64, 24]" in r.json()["detail"]
    r = _post(server, [("phases", ("a.nrrd", phases[0].read_bytes())), ("phases", ("b.nrrd", phases[1].read_bytes()))],
              params={"model": "no-such-model"})
    assert r.status_code == 422 and "Unknown model" in r.json()["detail"]
    assert _jobs_left(server) == []


def test_cancel_mid_run_and_full_queue(server, client, phantom, tmp_path):
    phases = _phase_files(phantom.study, tmp_path)
    first = client.submit(phases, params={"model": "kinetic", "options": SLEEP})
    stream = client.events(first["job_id"])
    for event in stream:  # the job is running and asleep after segmenting
        if event["event"] == "log" and "debug_sleep_s" in event["message"]:
            break
    queued = [client.submit(phases, params={"model": "kinetic"}) for _ in range(2)]
    assert [q["queue_position"] for q in queued] == [1, 2]
    r = _post(server, [("phases", (p.name, p.read_bytes())) for p in phases])
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    started = time.monotonic()
    client.cancel(first["job_id"])
    rest = list(stream)
    assert rest[-1]["event"] == "error" and rest[-1]["kind"] == "cancelled"
    assert time.monotonic() - started < 10
    assert client.status(first["job_id"])["status"] == "cancelled"
    with pytest.raises(Exception, match="409"):
        client.download(first["job_id"], "label", tmp_path / "x.nrrd")
    for job in queued:  # the same warm worker goes on with the queued jobs
        assert list(client.events(job["job_id"]))[-1]["event"] == "done"
    for job in [first] + queued:
        client.delete(job["job_id"])
    assert _jobs_left(server) == []


@pytest.mark.slow
def test_server_killed_mid_job_gives_a_clear_error_and_no_outputs(tmp_path, phantom):
    with running_server(tmp_path / "srv", workers=1) as server:
        folder = tmp_path / "job"
        request = rn.write_request(phantom.study, folder, "kinetic", options=SLEEP)
        runner = RemoteRunner.connect(server.url, server.token).start(request)
        _wait_for(lambda: any(e.get("event") == "log" and "debug_sleep_s" in e.get("message", "")
                              for e in runner.events))
        for process in [server.process] + psutil.Process(server.process.pid).children(recursive=True):
            process.kill()  # a crash: SIGKILL, nothing sent to the client
        final = runner.wait(timeout=30)
    assert final is not None and final["event"] == "error" and final["kind"] == "connection", final
    assert "Lost the connection" in final["message"] or "Cannot reach" in final["message"]
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(["request.json"] + [p for p in json.loads(request.read_text())["phases"]])


def test_checked_in_openapi_schema_matches_the_app():
    from BreastDCESegLib.server.app import openapi_document

    checked_in = json.loads((ROOT / "Resources" / "openapi.json").read_text())
    assert checked_in == json.loads(json.dumps(openapi_document()))
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/health"} <= set(checked_in["paths"])


@pytest.mark.slow
def test_panel_remote_backend_same_events_results_cancel_and_errors(server, phantom, tmp_path):
    from slicer_scene import slicer_scene_context

    from BreastDCESegLib import mrml
    from BreastDCESegLib.scene_logic import SceneLogic

    remote = {"url": server.url, "token": server.token}
    with slicer_scene_context() as ctx:
        logic = SceneLogic(ctx.scene, temp_root=str(tmp_path))
        nodes = mrml.add_study(ctx.scene, phantom.study, sequence=False)
        study, reference = logic.buildStudy("Phase volumes", None, logic.detectPhases("Phase volumes", None, nodes.volumes))
        segmentations = {}
        for name, backend in (("remote", remote), ("local", None)):
            job = logic.start(study, reference, "kinetic", "cpu", server=backend)
            final = job.runner.wait(timeout=60)
            kinds = [e["event"] for e in job.runner.events]
            assert final["event"] == "done" and kinds[0] == "started" and kinds[-1] == "done", kinds
            assert [e["stage"] for e in job.runner.events if e["event"] == "progress"][:2] == ["load", "load"]
            segmentations[name] = logic.finish(job, final)
            logic.cleanup(job)
        masks = {k: mrml.segment_array(s, mrml.tumor_segment_id(s)) for k, s in segmentations.items()}
        assert masks["remote"].sum() == 187 and np.array_equal(masks["remote"], masks["local"])

        job = logic.start(study, reference, "kinetic", "cpu", options=SLEEP, server=remote)
        _wait_for(lambda: any("debug_sleep_s" in e.get("message", "") for e in job.runner.events))
        job.runner.cancel()
        assert job.runner.wait(5)["kind"] == "cancelled"
        logic.cleanup(job)
        _wait_for(lambda: _jobs_left(server) == [])  # the server stopped and deleted the job

        job = logic.start(study, reference, "kinetic", "cpu", server={**remote, "token": "wrong-token-0123456789"})
        final = job.runner.wait(timeout=30)
        assert final["kind"] == "unauthorized" and "401" in final["message"]
        assert logic.launcher.serverModels(remote)["default"]
        logic.cleanup(job)
        logic.closeWorker()


@pytest.mark.slow
def test_batch_through_the_server(server, phantom, tmp_path):
    from BreastDCESegLib import batch
    from BreastDCESegLib.io.files import write_study_phases
    from BreastDCESegLib.outputs import output_paths

    write_study_phases(phantom.study, tmp_path / "cohort" / "case1", ext=".nii.gz", case_id="case1")
    (tmp_path / "token").write_text(server.token + "\n")
    code = batch.main(["--input", str(tmp_path / "cohort"), "--output", str(tmp_path / "out"), "--model", "kinetic",
                       "--server", server.url, "--token-file", str(tmp_path / "token"), "--tta"])
    assert code == 0
    paths = output_paths(tmp_path / "out", "case1")
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["label"])))
    local = inference.segment(phantom.study, "kinetic", device="cpu", options={"tta": True})
    assert metrics.dice(label == 1, local.tumor_array() > 0) == 1.0 and local.tumor_array().sum() == 187
    spread = sitk.ReadImage(str(paths["label"].parent / "case1_uncertainty.nii.gz"))  # option tta, on the server
    assert np.array_equal(sitk.GetArrayFromImage(spread), sitk.GetArrayFromImage(local.uncertainty))
    assert _jobs_left(server) == []
    (tmp_path / "token").write_text("wrong-token-0123456789\n")
    assert batch.main(["--input", str(tmp_path / "cohort"), "--output", str(tmp_path / "out2"), "--model", "kinetic",
                       "--server", server.url, "--token-file", str(tmp_path / "token")]) != 0


@pytest.mark.slow
def test_finished_jobs_expire_after_their_time_to_live(tmp_path):
    from BreastDCESegLib.server.config import ServerConfig
    from BreastDCESegLib.server.jobs import JobStore

    store = JobStore(ServerConfig(token="t" * 32, work_dir=tmp_path, job_ttl_s=60.0))  # no workers started
    done, running = store.create(), store.create()
    (done.dir / "out").mkdir()
    done.add({"event": "done", "outputs": {}})
    running.status = "running"
    assert store.sweep_once(now=done.finished + 59) == []
    assert store.sweep_once(now=done.finished + 61) == [done.id]
    assert not done.dir.exists() and store.get(done.id) is None
    assert running.dir.exists() and store.get(running.id) is running  # unfinished: kept far longer
    assert store.sweep_once(now=running.created + 4 * 60 + 3601) == [running.id] and not running.dir.exists()
