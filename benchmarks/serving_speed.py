"""Serving latency and capacity of issue 19, in one command (about 4-5 minutes):

  shop-100   10,000 fashion products (out/shop10k, built as serving_load.py builds it), text search at 100 req/s
  hd-100     54,667 Home Depot titles (out/hd-hybrid: exact Flat vectors, hybrid), text search at 100 req/s, Home
             Depot dev queries
  hd-ann-100 the same titles with the dense leg on HNSW32 (out/hd-hnsw32), text search at 100 req/s
  sweep      10,000 products, text search at rising rates: the highest with p99 <= 100 ms and no errors
  image-20   10,000 products, POST /search/image at 20 req/s (catalog photos)

Indexes missing under OUT are built first (the two Home Depot ones encode 54,667 titles each: a few minutes,
once). Every server is `vitrina serve INDEX --cache-size 0 --rate-limit off` (one worker, query cache off, so each
query is encoded), hybrid text search (the default), k=10, queries distinct within each phase. The load comes
from benchmarks/loadgen.py: an open-loop generator (latency counted from each request's due time) in its own
process pinned to one core with taskset; its own CPU time is printed beside each phase, with the server's and
the load average. Prints one table and writes out/serving_speed.json.

    (cd benchmarks && ../.venv/bin/python serving_speed.py)
    (cd benchmarks && ../.venv/bin/python serving_speed.py --only hd-100 --server-flags="--workers 2")
    (cd benchmarks && ../.venv/bin/python serving_speed.py --workers 1 2 --rounds 2 --only shop-100 hd-100 sweep --sweep 250 300 350)
    (cd benchmarks && ../.venv/bin/python serving_speed.py --code /tmp/before .. --rounds 2 --only hd-100 --seconds 15)

Each phase also prints where the time went (`stages`, from the server's /metrics: encoder batches, their mean size and
the share of single-query batches, encoder and search seconds) and the CPU seconds of the server's busiest threads
(`thread_cpu_s`, 'loop' is the event loop).
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import csv
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import psutil

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, ensure_index, markdown_table, start_server
from loadgen import get_request, upload_request
from serving_load import queries_and_photos, shop_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.index import IndexConfig

HERE = Path(__file__).resolve().parent
PORT = 8766
HOST = "127.0.0.1"


def text_requests(queries: list[str]) -> list[str]:
    return [get_request(HOST, "/search?" + urlencode({"q": q, "k": 10})) for q in queries]


def hd_queries() -> list[str]:
    with (DATA / "homedepot" / "qrels_dev.csv").open(newline="", encoding="utf-8") as f:
        return list(dict.fromkeys(row["query"] for row in csv.DictReader(f)))


def hd_index(out: Path, factory: str) -> Path:
    """The Home Depot titles indexed (hybrid) with FAISS index type `factory`, built under `out` when missing."""
    target = out / ("hd-hybrid" if factory == "Flat" else f"hd-{factory.lower()}")
    config = VitrinaConfig(image_model=None, index=IndexConfig(factory=factory),
                           catalog=CatalogConfig(id_field="product_id", text_fields=("title",), image_field=None))
    ensure_index(DATA / "homedepot" / "products.csv", target, config, reuse=True)
    return target


def load(requests: list[str], rate: float, seconds: float, cpu: str, warmup: float = 2.0) -> dict:
    """Run loadgen.py pinned to core `cpu` over the prepared requests; its JSON result."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"host": HOST, "port": PORT, "requests": requests}, f)
    try:
        command = [sys.executable, str(HERE / "loadgen.py"), f.name, str(rate), str(seconds), "--warmup", str(warmup)]
        if cpu:
            command = ["taskset", "-c", cpu, *command]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)


def server_cpu(process: subprocess.Popen) -> float:
    """CPU seconds used so far by the server and its children."""
    try:
        proc = psutil.Process(process.pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            total += sum(child.cpu_times()[:2])
        return total
    except psutil.NoSuchProcess:
        return 0.0


def thread_cpu(process: subprocess.Popen) -> dict[str, float]:
    """CPU seconds so far of each thread of the server and its children, keyed 'pid/tid' ('loop' marks each main
    thread, where the event loop runs)."""
    out: dict[str, float] = {}
    try:
        procs = [psutil.Process(process.pid)]
        procs += procs[0].children(recursive=True)
        for proc in procs:
            for thread in proc.threads():
                key = f"{proc.pid}/{'loop' if thread.id == proc.pid else thread.id}"
                out[key] = thread.user_time + thread.system_time
    except psutil.NoSuchProcess:
        pass
    return out


def scrape_metrics() -> dict[str, float]:
    """The server's /metrics samples that tell where a request's time went (summed over workers)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"vitrina_encoder_batch_size", "vitrina_encoder_seconds", "vitrina_index_search_seconds"}
    values: dict[str, float] = {}
    try:
        text = httpx.get(f"http://{HOST}:{PORT}/metrics", timeout=10).text
    except httpx.HTTPError:
        return values
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.labels.get("modality", "text") != "text" or sample.labels.get("space", "text") != "text":
                continue
            key = sample.name + ("" if "le" not in sample.labels else f"<={sample.labels['le']}")
            values[key] = values.get(key, 0.0) + sample.value
    return values


def stages(before: dict[str, float], after: dict[str, float]) -> dict:
    """Per-stage figures of one phase from two /metrics scrapes: text encoder batches, their mean size and the share
    of batches of at most 1, 4 and 8 queries, encoder and dense/index search seconds."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    batches = delta.get("vitrina_encoder_batch_size_count", 0.0)
    if not batches:
        return {}
    share = {f"batches_le_{n}": round(delta.get(f"vitrina_encoder_batch_size_bucket<={n}.0", 0.0) / batches, 3) for n in (1, 4, 8, 16)}
    return dict(batches=int(batches), mean_batch=round(delta.get("vitrina_encoder_batch_size_sum", 0.0) / batches, 2), **share,
                encoder_s=round(delta.get("vitrina_encoder_seconds_sum", 0.0), 2),
                search_s=round(delta.get("vitrina_index_search_seconds_sum", 0.0), 2),
                searches=int(delta.get("vitrina_index_search_seconds_count", 0.0)))


def measured(name: str, process: subprocess.Popen, requests: list[str], rate: float, seconds: float, cpu: str) -> dict:
    before, threads_before, metrics_before = server_cpu(process), thread_cpu(process), scrape_metrics()
    result = load(requests, rate, seconds, cpu)
    used = server_cpu(process) - before
    threads_after, metrics_after = thread_cpu(process), scrape_metrics()
    busy = sorted(((round(t - threads_before.get(k, 0.0), 2), k) for k, t in threads_after.items()), reverse=True)
    sent = int((seconds + 2.0) * rate)  # the warm-up's requests too
    result.update(phase=name, target_rps=rate, server_cpu_s=round(used, 1), server_cpu_ms_per_request=round(1000 * used / sent, 2),
                  loadavg=round(os.getloadavg()[0], 2), stages=stages(metrics_before, metrics_after),
                  thread_cpu_s={k: t for t, k in busy[:6] if t > 0.05})
    print(json.dumps(result), flush=True)
    return result


def serving(index: Path, flags: list[str], code: str | None = None) -> subprocess.Popen:
    """`vitrina serve INDEX` on this port, cache and rate limit off; `code`: serve that checkout (PYTHONPATH)."""
    env = os.environ.copy()
    if code:
        env["PYTHONPATH"] = code
    return start_server(index, PORT, ["--cache-size", "0", "--rate-limit", "off", *flags], env)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def run_phases(args: argparse.Namespace, flags: list[str], tag: str, code: str | None = None) -> list[dict]:
    """Every wanted phase against servers started with `flags`; phase names end with `tag`."""
    results: list[dict] = []
    wanted = args.only or ["shop-100", "sweep", "image-20", "hd-100", "hd-ann-100"]
    if {"shop-100", "sweep", "image-20"} & set(wanted):
        catalog = shop_catalog(args.out)
        shop = args.out / "shop10k"
        ensure_index(catalog, shop, VitrinaConfig(images=DATA_IMAGES), reuse=True)
        queries_file, photos_file = queries_and_photos(catalog, args.out, n_queries=12_000)
        queries = queries_file.read_text().splitlines()
        random.Random(1).shuffle(queries)  # the file is sorted: no run of queries sharing their first words
        photos = [Path(p) for p in photos_file.read_text().splitlines()]
        process = serving(shop, flags, code)
        try:
            offset = 0
            if "shop-100" in wanted:
                part = queries[offset:offset + int(args.seconds * 100) + 400]
                offset += len(part)
                results.append(measured("shop-100" + tag, process, text_requests(part), 100, args.seconds, args.loadgen_cpu))
            for rate in args.sweep if "sweep" in wanted else ():
                need = int((args.sweep_seconds + 2) * rate)
                part = (queries[offset:] + queries)[:need] if offset + need > len(queries) else queries[offset:offset + need]
                offset = (offset + need) % len(queries)
                results.append(measured(f"sweep-{rate:g}{tag}", process, text_requests(part), rate, args.sweep_seconds,
                                        args.loadgen_cpu))
            if "image-20" in wanted:
                uploads = [upload_request(HOST, "/search/image?k=10", p.name, p.read_bytes()) for p in photos]
                results.append(measured("image-20" + tag, process, uploads, 20, args.seconds, args.loadgen_cpu))
        finally:
            stop(process)
    for name, factory, given in (("hd-100", "Flat", args.hd), ("hd-ann-100", "HNSW32", args.hd_ann)):
        if name not in wanted:
            continue
        process = serving(given or hd_index(args.out, factory), flags, code)
        try:
            part = hd_queries()[: int((args.seconds + 2) * 100)]
            results.append(measured(name + tag, process, text_requests(part), 100, args.seconds, args.loadgen_cpu))
        finally:
            stop(process)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--hd", type=Path, default=None, help="a Home Depot hybrid index, exact (default: OUT/hd-hybrid)")
    parser.add_argument("--hd-ann", type=Path, default=None, help="a Home Depot hybrid index on HNSW (default: OUT/hd-hnsw32)")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds of each fixed-rate phase")
    parser.add_argument("--sweep", type=float, nargs="*", default=[200, 250, 300, 350, 400])
    parser.add_argument("--sweep-seconds", type=float, default=15)
    parser.add_argument("--only", nargs="*", default=None, help="phases to run (shop-100 sweep image-20 hd-100 hd-ann-100)")
    parser.add_argument("--server-flags", default="", help="more `vitrina serve` flags, e.g. '--workers 2'")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="`vitrina serve --workers` values to compare side by side, e.g. 1 2 (phases end /w1, /w2)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the worker counts, interleaved (A/B rounds)")
    parser.add_argument("--code", nargs="+", default=[None],
                        help="checkouts to serve side by side, interleaved in each round (their PYTHONPATH), e.g. "
                             "/tmp/before . (phases end /c1, /c2 in that order)")
    parser.add_argument("--loadgen-cpu", default="1", help="core the generator is pinned to ('' for none)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    flags = shlex.split(args.server_flags)
    results: list[dict] = []
    for _ in range(args.rounds):  # interleaved A/B rounds over the worker counts and code versions
        for workers in args.workers:
            for n, code in enumerate(args.code, 1):
                tag = (f"/w{workers}" if len(args.workers) > 1 else "") + (f"/c{n}" if len(args.code) > 1 else "")
                results += run_phases(args, [*flags, "--workers", str(workers)], tag,
                                      str(Path(code).resolve()) if code else None)
    (args.out / "serving_speed.json").write_text(json.dumps(results, indent=2))
    print(markdown_table(
        ["phase", "target req/s", "achieved req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms",
         "server CPU s", "server CPU ms / request", "mean batch", "event loop CPU s", "generator CPU s", "load average"],
        [[r["phase"], r["target_rps"], r["achieved_rps"], r["errors"] + r["unanswered"], r["p50_ms"], r["p95_ms"],
          r["p99_ms"], r["max_ms"], r["server_cpu_s"],
          r["server_cpu_ms_per_request"], r["stages"].get("mean_batch", ""),
          round(sum(t for k, t in r["thread_cpu_s"].items() if k.endswith("/loop")), 2), r["generator_cpu_s"], r["loadavg"]]
         for r in results]))
    for tag in dict.fromkeys(r["phase"].partition("/")[2] for r in results if r["phase"].startswith("sweep-")):
        sweep = [r for r in results if r["phase"].startswith("sweep-") and r["phase"].partition("/")[2] == tag]
        passing = [r["target_rps"] for r in sweep if r["p99_ms"] <= 100 and not r["errors"] and not r["unanswered"]
                   and r["achieved_rps"] >= 0.98 * r["target_rps"]]
        print(f"{tag or 'the server'}: highest swept rate with p99 <= 100 ms and no errors (best round): "
              f"{max(passing) if passing else 'none'} req/s")

if __name__ == "__main__":
    main()
