"""Memory of `vitrina serve INDEX --workers N` (forked after loading): USS, PSS and RSS of the parent and each worker
once ready and after some searches, then again after `POST /admin/reload` (each worker loads its own copy of the
new version: not shared) and after a worker is killed and replaced by the supervisor. About a minute on Home Depot.

    (cd benchmarks && ../.venv/bin/python worker_memory.py out/hd-hybrid --workers 2)
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from benchutil import markdown_table, start_server

PORT = 8768
KEY = "worker-memory-benchmark"


def memory(parent: psutil.Process) -> list[list]:
    """One row per process (parent first): pid, role, USS / PSS / RSS MiB."""
    rows = []
    for role, proc in [("parent", parent)] + [("worker", c) for c in parent.children()]:
        info = proc.memory_full_info()
        rows.append([proc.pid, role, round(info.uss / 2**20), round(info.pss / 2**20), round(info.rss / 2**20)])
    return rows


def searches(base: str, n: int = 40) -> None:
    for i in range(n):
        httpx.get(f"{base}/search", params={"q": f"drill {i}", "k": 10}, timeout=60).raise_for_status()


def wait_workers(parent: psutil.Process, base: str, workers: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = [httpx.get(f"{base}/readyz", timeout=10).status_code for _ in range(4)]
        if len(parent.children()) == workers and set(ready) == {200}:
            return
        time.sleep(0.5)
    raise SystemExit(f"the workers did not come back: {parent.children()}, /readyz {ready}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{PORT}"
    process = start_server(args.index, PORT, ["--workers", str(args.workers), "--rate-limit", "off"],
                           {**os.environ, "VITRINA_API_KEY": KEY})
    parent = psutil.Process(process.pid)
    table = []
    try:
        wait_workers(parent, base, args.workers)
        searches(base)
        table += [["ready, 40 searches", *row] for row in memory(parent)]
        print(table, flush=True)
        httpx.post(f"{base}/admin/reload", headers={"X-API-Key": KEY}, timeout=300).raise_for_status()
        time.sleep(5)  # the other workers follow the reload signal within a second, then load
        wait_workers(parent, base, args.workers)
        searches(base)
        table += [["after a reload", *row] for row in memory(parent)]
        os.kill(parent.children()[0].pid, signal.SIGKILL)
        time.sleep(1)
        wait_workers(parent, base, args.workers)
        searches(base)
        table += [["a worker killed and replaced", *row] for row in memory(parent)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    print(markdown_table(["when", "pid", "process", "USS MiB", "PSS MiB", "RSS MiB"], table))
    for when in dict.fromkeys(row[0] for row in table):
        rows = [row for row in table if row[0] == when]
        print(f"{when}: total USS {sum(r[3] for r in rows)} MiB, PSS {sum(r[4] for r in rows)} MiB "
              f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
