"""Start the real ``breastdceseg serve`` in a subprocess on a free loopback port (tests, benchmarks).

Usage::

    with running_server(tmp_path, workers=1, max_queue=2) as server:
        client = ServerClient(server.url, server.token)
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from BreastDCESegLib.runner import kill_tree, worker_environment  # noqa: E402

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path, workers: int = 1, max_queue: int = 2, extra: tuple = (),
                   startup_timeout: float = 60.0) -> Iterator[SimpleNamespace]:
    """A server with ``workers`` warm workers on the CPU; its log in ``folder/server.log``."""
    import httpx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    work_dir = folder / "work"
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "BreastDCESegLib.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--token-file", str(token_file), "--device", "cpu", "--workers", str(workers), "--max-queue",
         str(max_queue), "--work-dir", str(work_dir), "--allow-debug-options", "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=worker_environment(), cwd=str(folder))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError(f"the server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield SimpleNamespace(url=url, token=TOKEN, process=process, work_dir=work_dir, jobs_dir=work_dir / "jobs",
                              log=folder / "server.log")
    finally:
        if process.poll() is None:
            kill_tree(process.pid, 5.0, popen=process)
        log.close()
