"""The feedback loop under load (issue 15, item 6): 10,000 single-event POST /events in a row against a
real `vitrina serve` process on loopback, with text searches running beside them.

Indexes the first --products fashion products by title (packaged MiniLM, no images) into
out/events-load (a fresh copy each run: no events, no behaviour), optionally trains the shared space
on seeded events (--trained, so snapshots also refresh the fused vectors), starts `vitrina serve`,
then measures:
  - search p50/p99 alone (before), then while the events are posted (during), one search every
    --search-every-ms on a second connection;
  - POST /events p50/p99/max over --events requests, one event each, sequential, keep-alive;
  - RSS (VmRSS of /proc/PID/status), threads and open files of the server: at the start (after a
    warm-up), every 1,000 events, and at the end;
  - that every acknowledged event is in the log (lines of events/log.jsonl) and that a snapshot was
    written by the end.
Prints one JSON object and writes out/events_load.json. Usage (a few minutes; the first run indexes):
    (cd benchmarks && ../.venv/bin/python events_load.py [--reuse] [--trained])
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from benchutil import DATA, DEFAULT_OUT, REPO, ensure_index, start_server
from vitrina.engine.config import VitrinaConfig

KEY = "load-test-key-0123"
USER_KEY = "load-test-user-key-0123456789"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "VITRINA_API_KEY": KEY, "VITRINA_USER_KEY": USER_KEY}  # this checkout's code
BIN = Path(sys.executable).parent
KINDS = ("view", "view", "view", "click", "click", "cart", "purchase")


def catalog(out: Path, size: int) -> Path:
    with (DATA / "fashion" / "products.csv").open(newline="", encoding="utf-8") as f:
        rows = [{"id": r["id"], "title": r["title"], "category": r["articleType"]} for _, r in zip(range(size), csv.DictReader(f))]
    target = out / f"events-load-{size}.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def process_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    value = {line.split(":")[0]: line.split(":")[1].strip() for line in status}
    return {"rss_mib": round(int(value["VmRSS"].split()[0]) / 1024, 1), "threads": int(value["Threads"]),
            "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def serve(index: Path, port: int, *extra: str) -> subprocess.Popen:
    return start_server(index, port, extra, ENV)


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def event(rng: random.Random, ids: list[str], users: int) -> dict:
    return {"user_id": f"shopper-{rng.randrange(users)}", "product_id": rng.choice(ids), "event": rng.choice(KINDS),
            "timestamp": time.time() - rng.uniform(0, 30 * 86_400)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--reuse", action="store_true", help="reuse the built index when it exists")
    parser.add_argument("--products", type=int, default=3_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--searches", type=int, default=300, help="searches measured before the events")
    parser.add_argument("--search-every-ms", type=float, default=50.0, help="search pace while events are posted")
    parser.add_argument("--trained", action="store_true", help="train the shared space first (snapshots refresh fused vectors)")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = catalog(args.out, args.products)
    built = args.out / f"events-load-{args.products}-index"
    ensure_index(source, built, VitrinaConfig(image_model=None), args.reuse)
    index = args.out / "events-load"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(built, index, copy_function=os.link)
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [r["id"] for r in rows]
    queries = [" ".join(r["title"].lower().split()[1:4]) for r in rows[:2000]]
    rng = random.Random(0)
    if args.trained:
        seed = args.out / "events-load-seed.csv"
        with seed.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["user_id", "product_id", "event", "timestamp"])
            writer.writeheader()
            writer.writerows(event(rng, ids, args.users) for _ in range(5_000))
        for command in (["events", "add", str(index), str(seed)], ["train", str(index), "--epochs", "3", "-q"]):
            subprocess.run([str(BIN / "vitrina"), *command], check=True, env=ENV)

    process = serve(index, args.port)
    base = f"http://127.0.0.1:{args.port}"
    headers = {"X-API-Key": KEY}
    result: dict = {"products": len(ids), "events": args.events, "users": args.users, "trained": args.trained,
                    "command": " ".join(sys.argv)}
    try:
        with httpx.Client(base_url=base, timeout=60) as client, httpx.Client(base_url=base, timeout=60) as searcher:
            for i in range(50):  # warm-up: encoders, first behaviour fit, caches
                client.post("/events", json={"events": [event(rng, ids, args.users)]}, headers=headers).raise_for_status()
                searcher.get("/search", params={"q": queries[-1 - i], "k": 10}).raise_for_status()
            start = process_stats(process.pid)
            result["start"] = start
            before = []
            for q in queries[: args.searches]:
                t0 = time.perf_counter()
                searcher.get("/search", params={"q": q, "k": 10}).raise_for_status()
                before.append(time.perf_counter() - t0)
            result["search_before"] = percentiles(before)

            during: list[float] = []
            stop = threading.Event()

            def search_beside() -> None:
                n = 0
                while not stop.is_set():
                    t0 = time.perf_counter()
                    searcher.get("/search", params={"q": queries[(args.searches + n) % len(queries)], "k": 10}).raise_for_status()
                    during.append(time.perf_counter() - t0)
                    n += 1
                    stop.wait(args.search_every_ms / 1000)

            thread = threading.Thread(target=search_beside, daemon=True)
            thread.start()
            posts, samples, statuses = [], [], {}
            for i in range(args.events):
                body = {"events": [event(rng, ids, args.users)]}
                t0 = time.perf_counter()
                r = client.post("/events", json=body, headers=headers)
                posts.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if (i + 1) % 1_000 == 0:
                    samples.append({"events": i + 1, **process_stats(process.pid)})
                    print(json.dumps(samples[-1]), flush=True)
            stop.set()
            thread.join(30)
            result["events_post"] = percentiles(posts)
            result["statuses"] = statuses
            result["search_during"] = percentiles(during)
            result["samples"] = samples
            result["end"] = process_stats(process.pid)
            result["rss_growth_mib"] = round(max(s["rss_mib"] for s in samples + [result["end"]]) - start["rss_mib"], 1)
            result["index_version_after"] = client.get("/readyz").json().get("index_version")
            log = index / "events" / "log.jsonl"
            result["logged_events"] = log.read_text().count("\n") - 1 if log.is_file() else None  # every acknowledged one
            result["acknowledged_events"] = (5_000 if args.trained else 0) + 50 + statuses.get(200, 0)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
    result["snapshot_written"] = (index / "behaviour" / "behaviour.json").is_file()
    (args.out / "events_load.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
