"""Where the headless batch runs its cases: one warm worker for the cohort, or a server.

Starting a worker process per case imports torch and loads the model every time; for a cohort
that can cost more than the inference. :func:`cohort_backend` gives the batch one
:class:`~BreastDCESegLib.warm.WarmWorker` for all its cases (studies handed over through shared
memory), or, with ``--server URL --token-file F``, a
:class:`~BreastDCESegLib.remote.ServerClient` of a ``breastdceseg serve`` server.
``--one-process-per-case`` keeps the former behaviour. Every backend's ``submit(study, model,
device)`` returns a handle with ``result(on_event, timeout)`` and ``cancel()``; with the warm
worker (``pipelined``) the run starts at once, so the batch keeps two cases in flight
(:func:`BreastDCESegLib.batch_cases.run_cases`).

Usage (what :func:`BreastDCESegLib.batch.main` does)::

    with cohort_backend(args):                   # sets args.backend
        rows = run(args, scene)                  # begin_case calls args.backend.submit(...)
    cases = read_ahead(discover_cases(root))     # case k+1 is read while case k runs
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import contextvars
import copy
from typing import Any, Callable, Iterator, Optional, Sequence


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server``, ``--token-file``, ``--insecure``, ``--one-process-per-case``."""
    parser.add_argument("--server", default=None, metavar="URL",
                        help="run the cases on a 'breastdceseg serve' server (e.g. https://gpu:8765)")
    parser.add_argument("--token-file", default=None, help="file with the server's bearer token (with --server)")
    parser.add_argument("--insecure", action="store_true", help="with --server: do not verify its TLS certificate")
    parser.add_argument("--one-process-per-case", action="store_true",
                        help="start a new worker process per case instead of one warm worker for the cohort")


class Deferred:
    """A case whose blocking run starts when its result is asked for (a new process per case,
    or the server): the interface of :class:`~BreastDCESegLib.warm.WarmCase`."""

    def __init__(self, run: Callable[[Optional[Callable[[dict], None]], Optional[float]], Any]):
        self._run = run

    def result(self, on_event: Optional[Callable[[dict], None]] = None, timeout: Optional[float] = None) -> Any:
        return self._run(on_event, timeout)

    def cancel(self) -> None:
        """Nothing runs before :meth:`result`."""


class WarmBackend:
    """Every case through one warm worker process (model loaded once). :meth:`submit` queues a
    case at once, so the worker reads it while the previous case runs and starts it as soon as
    that one ends, while the batch writes the previous case's outputs."""

    pipelined = True
    # The worker leaves the clinical measures out of its internal report: the batch computes
    # them for <case>.json while the worker already runs the next case.
    OPTIONS = {"tumor_summary": False}

    def __init__(self, python: Optional[str] = None):
        from .warm import WarmWorker

        self.worker = WarmWorker(python=python, idle_timeout=None).start()  # starts while case 1 is read

    def submit(self, study, model: Optional[str], device: str, options: Optional[dict] = None) -> Any:
        from .warm import WarmCase

        return WarmCase(self.worker, study, model, device, {**self.OPTIONS, **(options or {})})

    def segment(self, study, model: Optional[str], device: str, on_event: Callable[[dict], None],
                timeout: Optional[float], options: Optional[dict] = None) -> Any:
        return self.submit(study, model, device, options).result(on_event, timeout)

    def close(self) -> None:
        self.worker.close()


class ServerBackend:
    """Every case on a ``breastdceseg serve`` server (its device, its registry)."""

    pipelined = False

    def __init__(self, url: str, token_file: str, verify: bool = True):
        from .remote import ServerClient, read_token_file

        self.client = ServerClient(url, read_token_file(token_file), verify=verify)
        self.client.version()  # fails now, with one clear line, when the URL or the token is wrong

    def submit(self, study, model: Optional[str], device: str, options: Optional[dict] = None) -> Deferred:
        return Deferred(lambda on_event, timeout: self.segment(study, model, device, on_event, timeout, options))

    def segment(self, study, model: Optional[str], device: str, on_event: Callable[[dict], None],
                timeout: Optional[float], options: Optional[dict] = None) -> Any:
        from .remote import run_segmentation_remote

        return run_segmentation_remote(self.client, study, model, options, on_event=on_event, timeout=timeout)

    def close(self) -> None:
        self.client.close()


class ProcessPerCaseBackend:
    """``--one-process-per-case``: a new worker process for every case (the earlier behaviour)."""

    pipelined = False

    def __init__(self, python: Optional[str] = None):
        self.python = python

    def submit(self, study, model: Optional[str], device: str, options: Optional[dict] = None) -> Deferred:
        from .runner import run_segmentation

        return Deferred(lambda on_event, timeout: run_segmentation(study, model, device=device, options=options,
                                                                   python=self.python, on_event=on_event,
                                                                   timeout=timeout))

    def close(self) -> None:
        """Nothing stays running between cases."""


@contextlib.contextmanager
def cohort_backend(args: argparse.Namespace) -> Iterator[Any]:
    """Set ``args.backend`` for the run (a warm worker, the server, or a process per case), close it after."""
    from .errors import BreastDCESegError

    server = getattr(args, "server", None)
    if server and not getattr(args, "token_file", None):
        raise BreastDCESegError("--server needs --token-file (a file with the server's token).")
    if server:
        backend = ServerBackend(server, args.token_file, verify=not getattr(args, "insecure", False))
    elif getattr(args, "one_process_per_case", False):
        backend = ProcessPerCaseBackend(getattr(args, "python", None))
    else:
        backend = WarmBackend(getattr(args, "python", None))
    args.backend = backend
    try:
        yield backend
    finally:
        args.backend = None
        if backend is not None:
            backend.close()


def read_ahead(cases: Sequence[Any]) -> list:
    """Copies of ``cases`` (:class:`~BreastDCESegLib.batch.Case`) whose ``load()`` also starts
    reading the next case on a background thread, so that reading overlaps the current case's
    inference. A read error is raised by that case's own ``load()``, as before."""
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batch-read-ahead")
    futures: dict[int, concurrent.futures.Future] = {}
    originals = [case.load for case in cases]

    def start(index: int) -> None:
        if 0 <= index < len(originals) and index not in futures:
            context = contextvars.copy_context()  # e.g. the batch's resampling permission
            futures[index] = reader.submit(context.run, originals[index])

    def load(index: int) -> Any:
        start(index)
        future = futures.pop(index)
        start(index + 1)
        return future.result()

    out = []
    for index, case in enumerate(cases):
        twin = copy.copy(case)
        twin.load = lambda index=index: load(index)
        out.append(twin)
    return out
