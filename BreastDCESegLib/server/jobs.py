"""Jobs of the HTTP server: a bounded queue onto N warm worker processes, one directory per job.

Each job lives in ``<work_dir>/jobs/<job id>/`` (``inputs/`` the phases, ``out/`` the worker's
outputs). :class:`JobStore` keeps the jobs in memory, holds at most ``max_queue`` of them
waiting (:class:`QueueFull` beyond: the app answers 503), and runs them on ``workers``
:class:`~BreastDCESegLib.warm.WarmWorker` processes (models stay loaded between jobs). A finished
job's directory is removed when the client deletes the job or ``job_ttl_s`` after it finished.
Log lines name jobs by id only: no file names, case ids or other patient data.

Usage::

    store = JobStore(config).start()
    job = store.create()                         # a fresh job directory
    ...                                          # save and check the inputs, write request.json
    store.enqueue(job)                           # QueueFull when the queue is full
    store.cancel(job.id); store.delete(job.id); store.close()
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .config import ServerConfig

log = logging.getLogger("breastdceseg.server")
OUTPUT_FILES = {"label": "tumor.nrrd", "segmentation": "tumor.seg.nrrd", "probability": "prob.nrrd",
                "breast": "breast.nrrd", "uncertainty": "uncertainty.nrrd", "result": "result.json"}
SWEEP_INTERVAL_S = 5.0


class QueueFull(Exception):
    """Every worker is busy and ``max_queue`` jobs are waiting."""


@dataclass
class Job:
    """One submitted study: its directory, state and the events of its run."""

    id: str
    dir: Path
    status: str = "receiving"  # receiving, queued, running, done, error, cancelled
    events: list = field(default_factory=list)
    final: Optional[dict] = None
    outputs: dict = field(default_factory=dict)  # output kind -> file name in dir/out
    created: float = field(default_factory=time.time)
    finished: Optional[float] = None
    run: Any = None
    cancel_requested: bool = False
    remove_when_stopped: bool = False  # deleted while its worker was still stopping

    @property
    def out_dir(self) -> Path:
        return self.dir / "out"

    def add(self, event: dict) -> None:
        """Append an event (the final one sets the status)."""
        if self.final is not None:
            return
        self.events.append(event)
        if event.get("event") == "done":
            self.final, self.status = event, "done"
        elif event.get("event") == "error":
            self.final = event
            self.status = "cancelled" if event.get("kind") == "cancelled" else "error"
        if self.final is not None:
            self.finished = time.time()


class JobStore:
    """Jobs in memory, the bounded queue and the worker slots (see the module docstring)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.jobs_dir = Path(config.work_dir) / "jobs"
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.waiting: "queue.Queue[Optional[Job]]" = queue.Queue(maxsize=max(int(config.max_queue), 1))
        self.workers: list = []
        self.threads: list[threading.Thread] = []
        self.closing = threading.Event()
        self.busy = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "JobStore":
        from ..warm import WarmWorker

        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.jobs_dir.iterdir():  # directories of a previous server run
            shutil.rmtree(stale, ignore_errors=True)
        for i in range(max(int(self.config.workers), 1)):
            worker = WarmWorker(python=self.config.python, idle_timeout=None)
            worker._ensure_started()
            self.workers.append(worker)
            self.threads.append(threading.Thread(target=self._slot, args=(worker,), name=f"slot-{i}", daemon=True))
        self.threads.append(threading.Thread(target=self._sweep, name="job-ttl", daemon=True))
        for t in self.threads:
            t.start()
        log.info("%d worker(s) on %s, queue of %d", len(self.workers), self.config.device, self.waiting.maxsize)
        return self

    def close(self) -> None:
        self.closing.set()
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            self.cancel(job.id)
        for _ in self.workers:
            try:
                self.waiting.put_nowait(None)
            except queue.Full:
                pass
        for worker in self.workers:
            worker.close(timeout=2.0)

    # ------------------------------------------------------------------ jobs
    def create(self) -> Job:
        job_id = secrets.token_hex(12)
        job = Job(job_id, self.jobs_dir / job_id)
        (job.dir / "inputs").mkdir(parents=True)
        with self.lock:
            self.jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self.lock:
            return self.jobs.get(job_id)

    def enqueue(self, job: Job) -> None:
        """Queue a job whose ``request.json`` is written; :class:`QueueFull` when no room is left."""
        job.status = "queued"
        try:
            self.waiting.put_nowait(job)
        except queue.Full:
            self.discard(job)
            raise QueueFull() from None
        log.info("job %s queued (%d waiting, %d running)", job.id, self.waiting.qsize(), self.busy)

    def discard(self, job: Job) -> None:
        """Forget a job and remove its directory."""
        with self.lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.dir, ignore_errors=True)

    def cancel(self, job_id: str) -> Optional[Job]:
        job = self.get(job_id)
        if job is None or job.final is not None:
            return job
        job.cancel_requested = True
        run = job.run
        if run is not None:
            threading.Thread(target=run.cancel, kwargs={"reason": "Cancelled by the client."}, daemon=True).start()
        else:
            job.add({"event": "error", "kind": "cancelled", "message": "Cancelled by the client before it started."})
        log.info("job %s cancel requested", job.id)
        return job

    def delete(self, job_id: str) -> bool:
        """Stop the job and remove it; its directory goes once its worker has stopped writing."""
        job = self.cancel(job_id)
        if job is None:
            return False
        run = job.run
        with self.lock:
            self.jobs.pop(job.id, None)
            stopping = run is not None and not run.worker_ended.is_set() and job.status == "running"
            job.remove_when_stopped = stopping
        if not stopping:
            shutil.rmtree(job.dir, ignore_errors=True)
        log.info("job %s deleted", job.id)
        return True

    def queue_position(self, job: Job) -> int:
        with self.waiting.mutex:
            waiting = list(self.waiting.queue)
        return next((i + 1 for i, j in enumerate(waiting) if j is job), 0)

    # ------------------------------------------------------------------ threads
    def _slot(self, worker) -> None:
        from ..warm import drive

        while not self.closing.is_set():
            job = self.waiting.get()
            if job is None:
                return
            if job.cancel_requested or job.final is not None or self.get(job.id) is None:
                continue
            with self.lock:
                self.busy += 1
            job.status = "running"
            started = time.perf_counter()
            try:
                job.run = worker.submit(job.dir / "request.json")
                final = drive(job.run, on_event=lambda e, job=job: self._relay(job, e))
                if final is not None and final.get("event") == "done":
                    self._finish(job, final)
                else:
                    job.add(self._public(final or {"event": "error", "kind": "internal", "message": "no result"}))
            except Exception as exc:  # noqa: BLE001 - a server fault fails the job, not the slot
                job.add({"event": "error", "kind": "internal", "message": f"server error: {type(exc).__name__}"})
                log.exception("job %s failed in the server", job.id)
            finally:
                if job.run is not None:
                    job.run.worker_ended.wait(10.0)  # a cancelled job: until its worker stopped writing
                with self.lock:
                    self.busy -= 1
                    remove = job.remove_when_stopped
                if remove:
                    shutil.rmtree(job.dir, ignore_errors=True)
            log.info("job %s %s after %.1f s", job.id, job.status, time.perf_counter() - started)

    @staticmethod
    def _public(event: dict) -> dict:
        """An event as clients see it: no server paths, no tracebacks of the worker's environment."""
        return {k: v for k, v in event.items() if k not in ("output_dir", "pid", "stderr_tail", "detail")}

    def _relay(self, job: Job, event: dict) -> None:
        if event.get("event") not in ("done", "error"):
            event = self._public(event)
            if isinstance(event.get("message"), str):  # the server's folders are not the client's business
                event["message"] = event["message"].replace(str(job.dir), "the job folder")
            job.add(event)

    def _finish(self, job: Job, done: dict) -> None:
        """Add the Slicer segmentation file next to the worker's outputs, then publish ``done``."""
        import SimpleITK as sitk

        from ..io.segwrite import SEGMENT_DEFAULTS, write_seg_nrrd

        outputs = dict(done.get("outputs") or {})
        label = sitk.Cast(sitk.ReadImage(str(job.out_dir / outputs["label"])), sitk.sitkUInt8)
        if "breast" in outputs:
            breast = sitk.Cast(sitk.ReadImage(str(job.out_dir / outputs["breast"])), sitk.sitkUInt8)
            label = sitk.Mask(label, label > 0, outsideValue=0) + sitk.Cast((breast > 0) & (label == 0), sitk.sitkUInt8) * 2
        write_seg_nrrd(job.out_dir / OUTPUT_FILES["segmentation"], label, SEGMENT_DEFAULTS)
        outputs["segmentation"] = OUTPUT_FILES["segmentation"]
        job.outputs = {k: v for k, v in outputs.items() if (job.out_dir / v).is_file()}
        job.add(self._public({**done, "outputs": dict(job.outputs)}))

    def _sweep(self) -> None:
        while not self.closing.wait(SWEEP_INTERVAL_S):
            self.sweep_once()

    def sweep_once(self, now: Optional[float] = None) -> list[str]:
        """Delete finished jobs older than the time-to-live (and unfinished ones far older);
        returns their ids."""
        now = time.time() if now is None else now
        with self.lock:
            jobs = list(self.jobs.values())
        expired = [job.id for job in jobs
                   if (job.finished is not None and now - job.finished > self.config.job_ttl_s)
                   or now - job.created > 4 * self.config.job_ttl_s + 3600]
        for job_id in expired:
            self.delete(job_id)
            log.info("job %s expired", job_id)
        return expired
