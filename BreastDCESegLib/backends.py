"""Where a panel run goes: a warm worker on this computer, or a ``breastdceseg serve`` server.

The panel's "Backend" choice is *This computer* (a warm worker process kept between runs,
model cached; see :mod:`BreastDCESegLib.warm`) or *Remote server* (URL and token; see
:mod:`BreastDCESegLib.remote`). Either way the run object has the interface of
:class:`~BreastDCESegLib.runner.WorkerRunner` and the outputs land in the job folder under the
worker's names, so :func:`~BreastDCESegLib.runner.load_outputs` reads both alike. The token is
passed per call and never stored here (the GUI keeps it in the application settings, never in
the scene).

Usage::

    launcher = RunLauncher(idle_timeout=600)
    run = launcher.start(study, folder, "kinetic", "auto")                          # this computer
    run = launcher.start(study, folder, "kinetic", server={"url": url, "token": token})  # remote
    launcher.close()                                                                # end the warm worker
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

BACKENDS = ("This computer", "Remote server")


class RunLauncher:
    """Starts runs on the chosen backend; keeps one warm worker per interpreter.

    Args:
        warm: keep a worker process between runs (False: one process per run, as before).
        idle_timeout: seconds after which an unused warm worker ends.
    """

    def __init__(self, warm: bool = True, idle_timeout: Optional[float] = 600.0):
        self.warm = warm
        self.idle_timeout = idle_timeout
        self._workers: dict[str, Any] = {}

    def warmWorker(self, python: str = "") -> Any:
        """The warm worker of ``python`` ('' = the default interpreter), started on first use."""
        from .warm import WarmWorker

        worker = self._workers.get(python)
        if worker is None:
            worker = self._workers[python] = WarmWorker(python=python or None, idle_timeout=self.idle_timeout)
        return worker

    def start(self, study: Any, folder: str | Path, modelId: Optional[str], device: str = "auto", python: str = "",
              options: Optional[dict] = None, server: Optional[dict] = None) -> Any:
        """Start a run of ``study`` with outputs in ``folder``; returns the runner-like object."""
        from . import runner

        options = dict(options or {})
        if server and server.get("url"):
            from .remote import RemoteRunner

            request = runner.write_request(study, folder, modelId or None, device, options)
            return RemoteRunner.connect(server["url"], server.get("token", ""),
                                        server.get("verify", True)).start(request)
        if self.warm:
            return self.warmWorker(python).submit_study(study, folder, modelId or None, device, options)
        return runner.WorkerRunner(python=python or None).start(
            runner.write_request(study, folder, modelId or None, device, options))

    @staticmethod
    def serverModels(server: dict) -> dict:
        """``{"default": id, "models": [...]}``: the registry of the server (what it can run)."""
        from .remote import ServerClient

        client = ServerClient(server["url"], server.get("token", ""), server.get("verify", True), timeout=15.0)
        try:
            return client.models()
        finally:
            client.close()

    def close(self) -> None:
        """End every warm worker (the panel's cleanup; they also end when this process dies)."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
