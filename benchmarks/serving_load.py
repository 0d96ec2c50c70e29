"""Load test of `vitrina serve` on loopback (locust), with an index swap under load.

Builds a 10,000-product fashion catalog (all 8,083 `fashion` products plus the first 1,917 H&M
articles; titles, categories, photos) into out/shop10k with the default ONNX backend, then runs four
phases of --duration seconds, each against a fresh `vitrina serve` (one worker):
  text          text search at --text-rps over 4,000 distinct queries (query cache on)
  text-nocache  the same with --cache-size 0, so every query is encoded
  image         photo upload search at --image-rps
  swap          text search at --text-rps while POST /admin/reload swaps index versions twice
Prints one table and writes out/serving_load.json. Usage (about 10 minutes, more on first run):
    (cd benchmarks && ../.venv/bin/python serving_load.py [--reuse])
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

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, ensure_index, markdown_table, start_server
from vitrina.engine.config import VitrinaConfig
from vitrina.index.manifest import IndexManifest
from vitrina.index.store import write_manifest

KEY = "load-test-key-0123"
BIN = Path(sys.executable).parent


def shop_catalog(out: Path, size: int = 10_000) -> Path:
    rows = []
    with (DATA / "fashion" / "products.csv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append({"id": r["id"], "title": r["title"], "category": r["articleType"], "colour": r["baseColour"],
                         "image": str((DATA / "fashion" / r["image"]).resolve())})
    with (DATA / "hm" / "articles.csv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if len(rows) >= size:
                break
            rows.append({"id": r["article_id"], "title": f"{r['prod_name']} {r['colour_group_name']} {r['product_type_name']}",
                         "category": r["product_type_name"], "colour": r["colour_group_name"],
                         "image": str((DATA / "hm" / r["image"]).resolve()) if r["image"] else ""})
    target = out / "shop10k.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def queries_and_photos(catalog: Path, out: Path, n_queries: int = 4_000, n_photos: int = 300) -> tuple[Path, Path]:
    rng = random.Random(0)
    with catalog.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    queries: set[str] = set()
    while len(queries) < n_queries:  # 2 to 4 words of a title, sometimes with its colour: distinct shopper-like queries
        words = rng.choice(rows)["title"].lower().split()
        start = rng.randrange(max(1, len(words) - 1))
        query = " ".join(words[start : start + rng.randint(2, 4)])
        if rng.random() < 0.3:
            query = f"{rng.choice(rows)['colour'].lower()} {query}"
        queries.add(query)
    photos = [r["image"] for r in rng.sample(rows, n_photos * 2) if r["image"] and Path(r["image"]).is_file()][:n_photos]
    (out / "serving-queries.txt").write_text("\n".join(sorted(queries)) + "\n")
    (out / "serving-photos.txt").write_text("\n".join(photos) + "\n")
    return out / "serving-queries.txt", out / "serving-photos.txt"


def second_version(index: Path) -> Path:
    """A hard-linked copy of the index under a new version, to swap to."""
    other = index.parent / f"{index.name}-b"
    shutil.rmtree(other, ignore_errors=True)
    shutil.copytree(index, other, copy_function=os.link)
    (other / "manifest.json").unlink()
    write_manifest(other, IndexManifest.load(index))
    return other


def serve(index: Path, port: int, *extra: str) -> subprocess.Popen:
    # --rate-limit off: the load comes from one loopback address, far above what one shopper ever sends
    return start_server(index, port, ("--rate-limit", "off", *extra), {**os.environ, "VITRINA_API_KEY": KEY})


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


def phase(name: str, args, index: Path, mode: str, rps: float, files: tuple[Path, Path], server_flags=(), swap_to=None):
    port = 8765
    process = serve(index, port, *server_flags)
    base = f"http://127.0.0.1:{port}"
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    users = max(1, int(rps // 5))
    env = {**os.environ, "VITRINA_LOAD_MODE": mode, "VITRINA_LOAD_RATE": str(rps / users),
           "VITRINA_LOAD_QUERIES": str(files[0]), "VITRINA_LOAD_IMAGES": str(files[1]),
           "VITRINA_LOAD_VERSIONS": str(logs / f"load-{name}-versions.json")}
    swaps = []

    def swapper() -> None:
        targets = [swap_to, index]
        for i in range(2):
            time.sleep(args.duration / 3)
            r = httpx.post(f"{base}/admin/reload", json={"path": str(targets[i])}, headers={"X-API-Key": KEY}, timeout=120)
            swaps.append(r.json())

    try:
        if swap_to is not None:
            threading.Thread(target=swapper, daemon=True).start()
        subprocess.run([str(BIN / "locust"), "-f", str(Path(__file__).parent / "locustfile.py"), "--headless",
                        "-u", str(users), "-r", str(users), "-t", f"{args.duration}s", "--host", base,
                        "--csv", str(logs / f"load-{name}"), "--only-summary", "--loglevel", "WARNING"],
                       env=env, check=False)
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    with (logs / f"load-{name}_stats.csv").open() as f:
        total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    versions = json.loads((logs / f"load-{name}-versions.json").read_text())
    batches = metric(metrics, "vitrina_encoder_batch_size_sum") / max(1.0, metric(metrics, "vitrina_encoder_batch_size_count"))
    hits, misses = (metric(metrics, f'vitrina_query_cache_total{{result="{r}"}}') for r in ("hit", "miss"))
    return {
        "phase": name, "target_rps": rps, "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1), "p50_ms": float(total["50%"]), "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]), "mean_batch": round(batches, 2),
        "cache_hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
        "versions_seen": versions, "swaps": swaps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--reuse", action="store_true", help="reuse out/shop10k when it exists")
    parser.add_argument("--duration", type=int, default=60, help="seconds per phase")
    parser.add_argument("--text-rps", type=float, default=100)
    parser.add_argument("--image-rps", type=float, default=10)
    parser.add_argument("--only", nargs="*", default=None, help="phases to run (text text-nocache image swap)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    catalog = shop_catalog(args.out)
    index = args.out / "shop10k"
    ensure_index(catalog, index, VitrinaConfig(images=DATA_IMAGES), args.reuse)
    files = queries_and_photos(catalog, args.out)
    other = second_version(index)
    wanted = args.only or ["text", "text-nocache", "image", "swap"]
    plans = {
        "text": ("text", args.text_rps, ()), "text-nocache": ("text", args.text_rps, ("--cache-size", "0")),
        "image": ("image", args.image_rps, ()), "swap": ("text", args.text_rps, ()),
    }
    results = []
    for name in wanted:
        mode, rps, flags = plans[name]
        results.append(phase(name, args, index, mode, rps, files, flags, other if name == "swap" else None))
        print(json.dumps(results[-1]), flush=True)
    (args.out / "serving_load.json").write_text(json.dumps(results, indent=2))
    print(markdown_table(
        ["phase", "target req/s", "achieved req/s", "requests", "failed", "p50 ms", "p95 ms", "p99 ms", "mean encoder batch", "cache hit rate"],
        [[r["phase"], r["target_rps"], r["rps"], r["requests"], r["failures"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
          r["mean_batch"], r["cache_hit_rate"]] for r in results]))


if __name__ == "__main__":
    main()
