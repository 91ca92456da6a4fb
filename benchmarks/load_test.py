"""Load test of ``breastdceseg serve`` on loopback: many clients, few workers, every result checked.

Starts the real server (``--workers 2``, a short queue, ``--retry-after 1``) in a subprocess,
then ``--clients`` threads each send ``--requests / --clients`` phantom studies (small: 64x64x24,
4 phases, the kinetic method, so that the run takes well under a minute on a shared CPU) through
the real client (:class:`BreastDCESegLib.remote.RemoteRunner`). A client that gets 503 waits the
Retry-After the server sent and submits again. A monitor polls ``/v1/health`` to check the queue
limits (running <= workers, waiting <= max queue). Every downloaded mask must equal the
in-process ``inference.segment`` mask of its study; no request may be lost.

Writes ``benchmarks/results/load_test.json`` (latency percentiles, histogram, 503 count,
highest observed queue) and ``load_test_latency.csv`` (one row per request).

Usage::

    python benchmarks/load_test.py                       # 40 requests, 8 clients, 2 workers
    python benchmarks/load_test.py --requests 80 --clients 16 --workers 4 --max-queue 8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing"))

from server_process import running_server  # noqa: E402

from BreastDCESegLib import inference, synth  # noqa: E402
from BreastDCESegLib import runner as rn  # noqa: E402
from BreastDCESegLib.remote import RemoteRunner, ServerClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PHANTOM = {"size": (64, 64, 24), "n_post": 3, "p_no_lesion": 0.0, "p_unknown_times": 0.0}


def one_request(client: ServerClient, study, folder: Path, expected: np.ndarray, stats: dict) -> dict:
    """Submit (again after each 503), wait, check the mask; a row for the CSV."""
    started = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        request = rn.write_request(study, folder / f"try{attempts}", "kinetic")
        run = RemoteRunner(client).start(request)
        final = run.wait(timeout=300)
        if final is not None and final.get("kind") == "busy":
            with stats["lock"]:
                stats["rejected_503"] += 1
            time.sleep(float(final.get("retry_after") or 1.0))
            continue
        break
    latency = time.perf_counter() - started
    ok = final is not None and final["event"] == "done"
    correct = False
    if ok:
        result = rn.load_outputs(final, request.parent, study)
        correct = bool(np.array_equal(result.tumor_array(), expected))
    return {"case": study.case_id, "status": final["event"] if final else "lost", "correct": correct,
            "attempts": attempts, "latency_s": round(latency, 3),
            "server_seconds": (final or {}).get("seconds", {}).get("total")}


def monitor(url: str, stop: threading.Event, peaks: dict) -> None:
    import httpx

    while not stop.is_set():
        try:
            health = httpx.get(url + "/v1/health", timeout=2).json()
            peaks["busy"] = max(peaks["busy"], health["busy"])
            peaks["waiting"] = max(peaks["waiting"], health["waiting"])
        except Exception:  # noqa: BLE001 - a missed sample is not a failure
            pass
        time.sleep(0.05)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-queue", type=int, default=4)
    p.add_argument("--studies", type=int, default=4, help="distinct phantom studies, cycled")
    args = p.parse_args(argv)

    phantoms = [synth.make_phantom(seed=300 + i, **PHANTOM) for i in range(args.studies)]
    expected = [inference.segment(ph.study, "kinetic", device="cpu").tumor_array() for ph in phantoms]
    rows, stats = [], {"rejected_503": 0, "lock": threading.Lock()}
    peaks = {"busy": 0, "waiting": 0}
    with tempfile.TemporaryDirectory(prefix="bdseg-load-") as tmp, \
            running_server(Path(tmp) / "server", workers=args.workers, max_queue=args.max_queue,
                           extra=("--retry-after", "1")) as server:
        stop = threading.Event()
        watcher = threading.Thread(target=monitor, args=(server.url, stop, peaks), daemon=True)
        watcher.start()

        def client_loop(index: int) -> None:
            client = ServerClient(server.url, server.token)
            for k in range(index, args.requests, args.clients):
                i = k % len(phantoms)
                row = one_request(client, phantoms[i].study, Path(tmp) / f"c{index}" / f"r{k}", expected[i], stats)
                with stats["lock"]:
                    rows.append({"request": k, "client": index, **row})
            client.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        stop.set()
        jobs_left = sorted(p.name for p in server.jobs_dir.iterdir())

    latencies = np.array([r["latency_s"] for r in rows])
    counts, edges = np.histogram(latencies, bins=10)
    summary = {
        "requests": args.requests, "clients": args.clients, "workers": args.workers, "max_queue": args.max_queue,
        "phantom": {**PHANTOM, "method": "kinetic", "studies": args.studies},
        "completed": len(rows), "done": sum(r["status"] == "done" for r in rows),
        "correct": sum(r["correct"] for r in rows), "lost": args.requests - len(rows),
        "rejected_503": stats["rejected_503"], "peak_running": peaks["busy"], "peak_waiting": peaks["waiting"],
        "queue_limits_honoured": peaks["busy"] <= args.workers and peaks["waiting"] <= args.max_queue,
        "jobs_left_on_server": len(jobs_left),
        "wall_s": round(wall, 2), "throughput_per_s": round(len(rows) / wall, 3),
        "latency_s": {q: round(float(np.percentile(latencies, int(q[1:]))), 3) for q in ("p50", "p90", "p99")}
        | {"min": round(float(latencies.min()), 3), "max": round(float(latencies.max()), 3),
           "mean": round(float(latencies.mean()), 3)},
        "latency_histogram": {"edges_s": [round(float(e), 3) for e in edges], "counts": counts.tolist()},
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "device": "cpu (loopback)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load_test.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(RESULTS / "load_test_latency.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["request"]))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("latency_histogram", "platform")}, indent=2))
    good = summary["correct"] == args.requests and summary["lost"] == 0 and summary["queue_limits_honoured"]
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
