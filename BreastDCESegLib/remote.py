"""Run segmentations on a ``breastdceseg serve`` server: an HTTP client and a remote runner.

:class:`RemoteRunner` has the interface of :class:`~BreastDCESegLib.runner.WorkerRunner`
(``start(request.json)``, ``poll``, ``wait``, ``cancel``, ``is_running``, ``events``, ``final``,
``returncode``): it uploads the phases named by a ``request.json`` written by
:func:`~BreastDCESegLib.runner.write_request`, relays the server's events (started, progress,
log, done, error), and on ``done`` downloads the outputs into the request's folder under the
worker's file names (temporary names first, renamed together), then deletes the job on the
server. So the panel and the batch load a remote result with
:func:`~BreastDCESegLib.runner.load_outputs` exactly like a local one. A lost connection ends
the run with an ``error`` event of kind ``connection`` and no output files.

Usage::

    client = ServerClient("https://gpu.example.org:8765", token=read_token_file("token"))
    client.models()                                          # the server's registry
    runner = RemoteRunner(client).start(write_request(study, folder, "kinetic"))
    final = runner.wait()
    result = load_outputs(final, folder, study)
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .errors import BreastDCESegError
from .runner import FINAL_EVENTS, RunEvents

LOCAL_NAMES = {"label": "tumor.nrrd", "segmentation": "tumor.seg.nrrd", "probability": "prob.nrrd",
               "breast": "breast.nrrd", "uncertainty": "uncertainty.nrrd", "result": "result.json"}
STREAM_READ_TIMEOUT_S = 30.0
STATUS_KINDS = {400: "bad-input", 413: "bad-input", 415: "bad-input", 422: "bad-input", 401: "unauthorized",
                403: "unauthorized", 503: "busy"}


class RemoteError(BreastDCESegError):
    """The server refused a request (``status``) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: Optional[int] = None, retry_after: Optional[float] = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after
        self.kind = STATUS_KINDS.get(status, "connection" if status is None else "internal")


def read_token_file(path: str | Path) -> str:
    """The bearer token: first line of ``path``, stripped."""
    try:
        return Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise BreastDCESegError(f"Cannot read the server token from {path} ({exc}).") from None


class ServerClient:
    """A thin client of the server's HTTP API (see :mod:`BreastDCESegLib.server.app`).

    Args:
        url: e.g. ``http://127.0.0.1:8765`` or ``https://gpu.example.org``.
        token: the bearer token. verify: TLS verification (True, False or a CA bundle path).
    """

    def __init__(self, url: str, token: str, verify: Any = True, timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                  verify=verify, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"Cannot reach the segmentation server {self.url} ({type(exc).__name__}: {exc}).") \
                from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except (ValueError, AttributeError):
                detail = response.text[:300]
            retry = response.headers.get("Retry-After")
            raise RemoteError(f"The server {self.url} answered {response.status_code}: {detail}",
                              response.status_code, float(retry) if retry else None)
        return response

    def health(self) -> dict:
        return self._call("GET", "/v1/health").json()

    def version(self) -> dict:
        return self._call("GET", "/v1/version").json()

    def models(self) -> dict:
        """``{"default": id, "models": [registry entries]}`` of the server."""
        return self._call("GET", "/v1/models").json()

    def submit(self, phases: Optional[list] = None, dicom_zip: Optional[str | Path] = None,
               params: Optional[dict] = None) -> dict:
        """Upload a study (phase files, or a DICOM zip); the job's state (``job_id``...)."""
        with contextlib.ExitStack() as stack:
            if dicom_zip is not None:
                files = [("dicom_zip", (Path(dicom_zip).name, stack.enter_context(open(dicom_zip, "rb"))))]
            else:
                files = [("phases", (Path(p).name, stack.enter_context(open(p, "rb")))) for p in phases or []]
            return self._call("POST", "/v1/jobs", files=files, data={"params": json.dumps(params or {})}).json()

    def status(self, job_id: str, since: int = 0) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}", params={"since": since}).json()

    def events(self, job_id: str, since: int = 0) -> Iterator[dict]:
        """The job's events from index ``since``, as the server streams them (ends after done/error)."""
        import httpx

        timeout = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=10.0)
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", params={"since": since}, timeout=timeout) as r:
            if r.status_code >= 400:
                r.read()
                raise RemoteError(f"The server {self.url} answered {r.status_code}: {r.text[:300]}", r.status_code)
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def download(self, job_id: str, kind: str, target: str | Path) -> Path:
        """Write one output of a finished job to ``target`` (streamed)."""
        import httpx

        target = Path(target)
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/outputs/{kind}") as r:
                if r.status_code >= 400:
                    r.read()
                    raise RemoteError(f"The server {self.url} answered {r.status_code} for {kind}: {r.text[:300]}",
                                      r.status_code)
                with open(target, "wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise RemoteError(f"Lost the segmentation server {self.url} while downloading {kind} ({exc}).") from None
        return target

    def cancel(self, job_id: str) -> None:
        self._call("POST", f"/v1/jobs/{job_id}/cancel", timeout=10.0)

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"/v1/jobs/{job_id}", timeout=10.0)


class RemoteRunner(RunEvents):
    """One run on a server, with the :class:`~BreastDCESegLib.runner.WorkerRunner` interface."""

    def __init__(self, client: ServerClient, own_client: bool = False):
        super().__init__()
        self.client, self.own_client = client, own_client
        self.job_id: Optional[str] = None
        self.stderr_tail = ""
        self._finished = threading.Event()
        self._cancelled = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def connect(cls, url: str, token: str, verify: Any = True) -> "RemoteRunner":
        return cls(ServerClient(url, token, verify), own_client=True)

    # ------------------------------------------------------------------ interface
    def start(self, request_path: str | Path) -> "RemoteRunner":
        """Upload the study of ``request.json`` and follow the job on a background thread."""
        if self._thread is not None:
            raise RuntimeError("this RemoteRunner already started a run; create a new one")
        request_path = Path(request_path).resolve()
        self._thread = threading.Thread(target=self._run, args=(request_path,), name="remote-run", daemon=True)
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread is not None and not self._finished.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        return self.final if self._finished.wait(timeout) else None

    def cancel(self, timeout: float = 5.0, reason: str = "Cancelled by the user.", wait: bool = False) -> None:
        """Ask the server to stop the job, then deliver a ``cancelled`` error. Returns at once (the
        request runs on a thread; safe from the GUI thread) unless ``wait``."""
        if self.final is not None or self._cancelled.is_set():
            return
        self._cancel_reason = reason
        self._cancelled.set()

        def stop() -> None:
            if self.job_id is not None:
                with contextlib.suppress(BreastDCESegError):
                    self.client.cancel(self.job_id)
            self._deliver({"event": "error", "kind": "cancelled", "message": reason}, from_canceller=True)

        stopper = threading.Thread(target=stop, name="remote-cancel", daemon=True)
        stopper.start()
        if wait:
            stopper.join(timeout)

    # ------------------------------------------------------------------ thread
    def _on_final(self, event: dict[str, Any]) -> None:
        self.returncode = 0 if event["event"] == "done" else 1

    def _run(self, request_path: Path) -> None:
        try:
            self._follow(request_path)
        except RemoteError as exc:
            self._deliver({"event": "error", "kind": exc.kind, "message": str(exc), "status": exc.status,
                           **({"retry_after": exc.retry_after} if exc.retry_after else {})})
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with an error event
            self._deliver({"event": "error", "kind": "internal", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if self._cancelled.is_set():
                self._deliver({"event": "error", "kind": "cancelled", "message": self._cancel_reason},
                              from_canceller=True)
            if self.job_id is not None and (self.final is None or self.final.get("kind") != "connection"):
                with contextlib.suppress(Exception):
                    self.client.delete(self.job_id)  # the server's copy is no longer needed
            self._finished.set()
            if self.own_client:
                self.client.close()

    def _follow(self, request_path: Path) -> None:
        request = json.loads(request_path.read_text(encoding="utf-8"))
        folder = request_path.parent
        phases = [folder / p for p in request["phases"]]
        params = {k: request.get(k) for k in ("model", "times", "case_id", "options")}
        state = self.client.submit(phases, params=params)
        self.job_id = state["job_id"]
        if self._cancelled.is_set():
            self.client.cancel(self.job_id)
            return
        final = self._stream()
        if final is None or self._cancelled.is_set():
            return
        if final.get("event") == "done":
            final = self._download(final, folder)
        self._deliver(final)

    def _stream(self) -> Optional[dict]:
        """Relay events until the final one; reconnect once after a dropped stream."""
        index, retries = 0, 0
        while not self._cancelled.is_set():
            try:
                for event in self.client.events(self.job_id, since=index):
                    index += 1
                    retries = 0
                    if event.get("event") in FINAL_EVENTS:
                        return event
                    if event.get("event") == "started":
                        event.setdefault("pid", f"{self.client.url} job {self.job_id[:8]}")  # where it runs
                    self._deliver(event)
                    if self._cancelled.is_set():
                        return None
            except RemoteError:
                raise
            except Exception as exc:  # noqa: BLE001 - httpx transport errors, broken chunked streams
                retries += 1
                if retries > 2:
                    raise RemoteError(f"Lost the connection to the segmentation server {self.client.url} during the "
                                      f"run ({type(exc).__name__}); no result was received. Check the server and "
                                      "run again.") from None
                time.sleep(0.5)
                self.client.status(self.job_id)  # RemoteError (connection) when the server is gone
        return None

    def _download(self, done: dict, folder: Path) -> dict:
        """Fetch every output under a temporary name, then rename them all; the local ``done``."""
        outputs = {k: LOCAL_NAMES[k] for k in (done.get("outputs") or {}) if k in LOCAL_NAMES}
        temps: dict[str, Path] = {}
        try:
            for kind, name in outputs.items():
                temps[kind] = self.client.download(self.job_id, kind, folder / f".part-{name}")
                if self._cancelled.is_set():
                    return {"event": "error", "kind": "cancelled", "message": "Cancelled by the user."}
            for kind, name in outputs.items():
                os.replace(temps.pop(kind), folder / name)
        finally:
            for path in temps.values():
                with contextlib.suppress(OSError):
                    path.unlink()
        return {**done, "outputs": outputs, "output_dir": str(folder), "job_id": self.job_id}


def run_segmentation_remote(client: ServerClient, study, model: Optional[str], options: Optional[dict] = None,
                            on_event: Optional[Callable[[dict], None]] = None, timeout: Optional[float] = None):
    """:func:`~BreastDCESegLib.runner.run_segmentation` on a server (blocking); raises the error
    of an ``error`` event."""
    from . import jobdirs
    from .runner import error_from_event, load_outputs, write_request
    from .warm import drive

    folder = jobdirs.create_job_dir("remote")  # under the known parent: pruned if this process is killed
    try:
        runner = RemoteRunner(client).start(write_request(study, folder, model, "auto", options))
        final = drive(runner, on_event, timeout)
        if final["event"] != "done":
            raise error_from_event(final)
        return load_outputs(final, folder, study)
    finally:
        jobdirs.remove_job_dir(folder)
