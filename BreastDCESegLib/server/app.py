"""The FastAPI application of ``breastdceseg serve`` (routes, bearer token, body-size limit).

Routes (all but ``/v1/health`` need ``Authorization: Bearer <token>``; the schema is served at
``/openapi.json`` and checked in as ``Resources/openapi.json``)::

    GET    /v1/health                      liveness, no token
    GET    /v1/version                     package and API version
    GET    /v1/models                      the server's model registry
    POST   /v1/jobs                        submit: multipart "phases" (NRRD/NIfTI, >= 2) or "dicom_zip",
                                           and "params" (JSON: model, times, case_id, options) -> 202
    GET    /v1/jobs/{id}?since=N           status, events from index N, outputs
    GET    /v1/jobs/{id}/events?since=N    the events as a stream of JSON lines, until done/error
    GET    /v1/jobs/{id}/outputs/{kind}    label, segmentation, probability, breast, uncertainty, result
    POST   /v1/jobs/{id}/cancel            stop the job
    DELETE /v1/jobs/{id}                   stop it and delete its directory (after fetching outputs)

Usage::

    app = create_app(ServerConfig(token="...", work_dir=Path("/var/lib/breastdceseg")))
    uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .. import __version__
from . import API_VERSION
from .config import ServerConfig
from .jobs import OUTPUT_FILES, Job, JobStore, QueueFull
from .submit import SUBMIT_OPENAPI, prepare_job
from .uploads import UploadRejected

log = logging.getLogger("breastdceseg.server")
bearer = HTTPBearer(auto_error=False, description="The server's token (breastdceseg serve --token-file).")
STREAM_POLL_S = 0.1


class BodySizeLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (411 without a
    Content-Length on an upload). The rest of an oversize body is read and dropped (up to
    ``drain`` bytes) so that the client receives the answer instead of a broken connection."""

    def __init__(self, app, limit: int, drain: int = 256 << 20):
        self.app, self.limit, self.drain = app, int(limit), int(drain)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is None and b"chunked" in headers.get(b"transfer-encoding", b""):
            return await self._answer(send, 411, "Send uploads with a Content-Length header.")
        if length is not None and int(length) > self.limit:
            await self._drain(receive, int(length))
            return await self._answer(send, 413, f"The upload ({int(length)} bytes) is larger than the server "
                                                 f"accepts ({self.limit} bytes).")
        return await self.app(scope, receive, send)

    async def _drain(self, receive, length: int) -> None:
        received = 0
        while received < min(length, self.drain):
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    @staticmethod
    async def _answer(send, status: int, message: str) -> None:
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(config: ServerConfig, store: Optional[JobStore] = None) -> FastAPI:
    """The app for ``config``; its job store (worker processes) starts with the app's lifespan."""
    expected = config.token.encode("utf-8")

    def require_token(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        given = (credentials.credentials if credentials is not None else "").encode("utf-8")
        if not hmac.compare_digest(given, expected):  # constant time, whatever was given
            raise HTTPException(401, "A valid bearer token is required (Authorization: Bearer <token>).",
                                headers={"WWW-Authenticate": "Bearer"})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = store or JobStore(config)
        if store is None:
            await run_in_threadpool(app.state.store.start)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.store.close)

    app = FastAPI(title="BreastDCESeg inference server", version=__version__, lifespan=lifespan,
                  description="Breast tumor segmentation in DCE-MRI on a GPU server; demo weights are trained on "
                              "synthetic phantoms and are not for clinical use.")
    app.add_middleware(BodySizeLimit, limit=config.limits.max_upload_bytes)
    secured = [Depends(require_token)]

    def job_or_404(request: Request, job_id: str) -> Job:
        job = request.app.state.store.get(job_id)
        if job is None:
            raise HTTPException(404, f"No job {job_id[:40]!r} on this server (finished jobs are deleted after "
                                     f"{config.job_ttl_s:g} s or when the client deleted them).")
        return job

    def job_state(request: Request, job: Job, since: int = 0) -> dict[str, Any]:
        return {"job_id": job.id, "status": job.status, "queue_position": request.app.state.store.queue_position(job),
                "events": job.events[max(int(since), 0):], "n_events": len(job.events),
                "outputs": dict(job.outputs), "final": job.final}

    @app.get("/v1/health", tags=["server"])
    def health(request: Request) -> dict[str, Any]:
        """Liveness (no token): ``{"status": "ok"}``."""
        store = request.app.state.store
        return {"status": "ok", "workers": len(store.workers), "busy": store.busy, "waiting": store.waiting.qsize()}

    @app.get("/v1/version", tags=["server"], dependencies=secured)
    def version() -> dict[str, Any]:
        """Package version, API version and the device jobs run on."""
        return {"name": "breastdceseg", "version": __version__, "api": API_VERSION, "device": config.device}

    @app.get("/v1/models", tags=["server"], dependencies=secured)
    def models() -> dict[str, Any]:
        """The server's model registry (entries of ``models.json``) and its default model."""
        from ..models.registry import load_registry

        registry = load_registry()
        return {"default": registry.default_id, "models": [spec.entry for spec in registry.list()]}

    @app.post("/v1/jobs", tags=["jobs"], dependencies=secured, status_code=202, openapi_extra=SUBMIT_OPENAPI)
    async def submit(request: Request) -> JSONResponse:
        """Submit a study; 202 with the job id, 4xx for a refused study, 503 when the queue is full."""
        store: JobStore = request.app.state.store
        limits = config.limits
        try:
            form = await request.form(max_files=limits.max_phase_files + 1, max_fields=8,
                                      max_part_size=1 << 20)
        except HTTPException:
            raise
        except Exception as exc:  # malformed multipart, too many files or fields
            raise HTTPException(400, f"The upload is not a valid multipart form within the limits ({exc}).") from None
        job = store.create()
        try:
            await run_in_threadpool(prepare_job, form, job, config)
            store.enqueue(job)
        except UploadRejected as exc:
            store.discard(job)
            log.info("job %s refused: %d", job.id, exc.status)
            raise HTTPException(exc.status, exc.message) from None
        except QueueFull:
            raise HTTPException(503, f"All {config.workers} worker(s) are busy and {config.max_queue} job(s) are "
                                     "waiting; try again later.",
                                headers={"Retry-After": str(config.retry_after_s)}) from None
        except BaseException:
            store.discard(job)
            raise
        finally:
            await form.close()
        return JSONResponse(job_state(request, job), status_code=202)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=secured)
    def job_status(request: Request, job_id: str, since: int = 0) -> dict[str, Any]:
        """Status, the events from index ``since`` and, once done, the output kinds."""
        return job_state(request, job_or_404(request, job_id), since)

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], dependencies=secured,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "one event per line, ending with done or error"}})
    async def job_events(request: Request, job_id: str, since: int = 0) -> StreamingResponse:
        """The job's events (started, progress, log, done, error) as JSON lines, from ``since``."""
        job = job_or_404(request, job_id)

        async def lines():
            index = max(int(since), 0)
            while True:
                events = job.events
                while index < len(events):
                    yield json.dumps(events[index]) + "\n"
                    index += 1
                if job.final is not None and index >= len(job.events):
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/v1/jobs/{job_id}/outputs/{kind}", tags=["jobs"], dependencies=secured,
             responses={200: {"content": {"application/octet-stream": {}}}})
    def job_output(request: Request, job_id: str, kind: str) -> FileResponse:
        """One output file of a finished job (``kind``: one of the job's ``outputs``)."""
        job = job_or_404(request, job_id)
        if kind not in OUTPUT_FILES:
            raise HTTPException(404, f"Unknown output {kind[:40]!r}; outputs are {', '.join(OUTPUT_FILES)}.")
        if job.status != "done":
            raise HTTPException(409, f"Job {job.id} is {job.status}; outputs exist once it is done.")
        if kind not in job.outputs:
            raise HTTPException(404, f"Job {job.id} has no {kind} output (it has {', '.join(job.outputs)}).")
        return FileResponse(job.out_dir / job.outputs[kind], filename=Path(job.outputs[kind]).name,
                            media_type="application/octet-stream")

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], dependencies=secured)
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        """Stop a queued or running job (its final event is an error of kind ``cancelled``)."""
        job = job_or_404(request, job_id)
        request.app.state.store.cancel(job.id)
        return {"job_id": job.id, "status": job.status}

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], dependencies=secured, status_code=204)
    def delete(request: Request, job_id: str) -> Response:
        """Stop the job if it runs and delete it with its directory (call after fetching outputs)."""
        job = job_or_404(request, job_id)
        request.app.state.store.delete(job.id)
        return Response(status_code=204)

    return app


def openapi_document(config: Optional[ServerConfig] = None) -> dict[str, Any]:
    """The OpenAPI schema of the app (the content of ``Resources/openapi.json``)."""
    app = create_app(config or ServerConfig(token="x" * 32, work_dir=Path(".")))
    return app.openapi()
