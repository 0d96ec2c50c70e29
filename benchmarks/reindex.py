"""Bulk re-indexing measurements (issue 7), two parts:

pipeline  `vitrina reindex` of the whole `fashion` catalog (8,083 products with photos) against the
          pure encoder time for the same inputs: every text encoded, every photo's pixels encoded
          (read, decoded and resized beforehand, outside the clock). Ratio = re-index time (without
          model loading) / pure encoder time. Same process, same encoders, one after the other.
ann       1,000,000 x 384 normalised vectors (the shop10k text embeddings, each repeated 100 times
          with noise) in each index type: build time, bytes per vector, the nprobe/efSearch that
          `tune_search` picks for recall@10 >= 0.95, recall@10 measured on other queries, and
          queries/s of a 1,000-query batch on one thread. Also a 10M sizing estimate from these.

resume    (issue 15) `vitrina reindex` of the `fashion` catalog from scratch, then again into a fresh root
          killed (SIGKILL) at half the full run's time and finished with `--resume`: the ratio resumed /
          full says how much work a resume redoes (1.0: all of it). Per shard size: automatic (default)
          and the old default of 10,000 (one shard for this catalog). Separate processes, wall clock,
          model loading included; exports cached in out/resume-home (not the user-wide cache).

Usage (pipeline + ann about 20 minutes, resume about 6 on 2 cores; writes out/reindex.json):
    (cd benchmarks && ../.venv/bin/python reindex.py [--only pipeline ann resume] [--vectors N] [--factories ...])
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from benchutil import DATA, DEFAULT_OUT, REPO, markdown_table, subset_catalog
from vitrina.encoders import load_image_encoder, load_text_encoder
from vitrina.encoders.image_io import load_images
from vitrina.engine.data.catalog import read_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.encode import absolute_spec, encode_texts
from vitrina.engine.build.reindex import ReindexConfig, reindex
from vitrina.index.product_index import ProductIndex
from vitrina.index.tuning import exact_neighbours, recall_at_k, sample_queries, tune_search

FACTORIES = ("IVF4096,SQ8", "HNSW32")  # "IVF4096,PQ96x4fs,RFlat" measured recall 0.50 here (RESULTS.md)


def pure_encoder_seconds(catalog: Path, config: VitrinaConfig) -> dict[str, float]:
    """Encoder time alone: texts, then photo pixels decoded beforehand (off the clock) in chunks."""
    products = read_catalog(catalog, config.catalog).products
    text = load_text_encoder(absolute_spec(config.text_model), config.encoders.for_catalog())
    image = load_image_encoder(absolute_spec(config.image_model), config.encoders.for_catalog())
    encode_texts(text, ["warm up"], progress=False)
    t0 = time.perf_counter()
    encode_texts(text, [p.text for p in products], progress=False)
    text_s = time.perf_counter() - t0
    sources = [p.image for p in products if p.image]
    image_s, step, batch = 0.0, 512, config.encoders.batch_size
    for start in range(0, len(sources), step):
        loaded = [img for img in load_images(sources[start : start + step]) if not isinstance(img, Exception)]
        pixels = image.preprocess(loaded)
        t0 = time.perf_counter()
        for b in range(0, len(pixels), batch):
            image.encode_pixels(np.stack(pixels[b : b + batch]))
        image_s += time.perf_counter() - t0
    return {"text_s": round(text_s, 2), "image_s": round(image_s, 2), "total_s": round(text_s + image_s, 2),
            "products": len(products), "images": len(sources)}


def pipeline(out: Path) -> dict:
    catalog = DATA / "fashion" / "products.csv"
    config = VitrinaConfig(progress=False)
    root = out / "reindex-fashion"
    shutil.rmtree(root, ignore_errors=True)
    pure = pure_encoder_seconds(catalog, config)
    report = reindex(catalog, root, config, ReindexConfig(shard_size=2000))
    s = report.seconds
    pipeline_s = s["total"] - s["setup"]
    again = reindex(catalog, root, config, ReindexConfig(shard_size=2000))  # nothing changed: all reused
    return {
        "products": report.products, "images_failed": report.images_failed, "pure_encoder": pure,
        "reindex_seconds": s, "reindex_without_setup_s": round(pipeline_s, 2),
        "ratio": round(pipeline_s / pure["total_s"], 3), "products_per_s": round(report.products / pipeline_s, 1),
        "unchanged_rerun_s": again.seconds["total"], "unchanged_rerun_encoded": again.encoded,
    }


def _vitrina(args: list[str], home: Path) -> subprocess.Popen:
    """`vitrina ARGS` in a process of its own (the project first on sys.path), exports cached under `home`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "vitrina", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"vitrina failed ({process.returncode}): {err[-2000:]}")
    return json.loads(out)


def _cpu_children() -> float:
    """CPU seconds (user + system) of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(run) -> tuple[object, float, float]:
    """run()'s result, its wall seconds and the CPU seconds of the one child process it waited for."""
    cpu, t0 = _cpu_children(), time.perf_counter()
    result = run()
    return result, time.perf_counter() - t0, _cpu_children() - cpu


def resume(out: Path, shard_sizes: list[str]) -> list[dict]:
    """Full re-index vs killed at half time + --resume, per shard size ("auto" or a number). CPU seconds
    besides wall ones: the other processes on a shared machine move wall times by 2x, CPU times much less.
    redone = CPU of the killed run + CPU of the resume - CPU of a full run: the work the kill cost."""
    catalog = DATA / "fashion" / "products.csv"
    home = out / "resume-home"
    warm = out / "resume-warm"
    shutil.rmtree(warm, ignore_errors=True)  # first: exports the models into home's cache (off the clock)
    small = subset_catalog(catalog, 50, out / "resume-subset", image_field="image")
    _finish(_vitrina(["reindex", str(small), "--out", str(warm), "-q", "--json", "--image-root", str(DATA)], home))
    shutil.rmtree(warm, ignore_errors=True)
    results = []
    for size in shard_sizes:
        flags = [] if size == "auto" else ["--shard-size", size]
        full_root, resumed_root = out / "resume-full", out / "resume-resumed"
        for root in (full_root, resumed_root):
            shutil.rmtree(root, ignore_errors=True)
        full, full_s, full_cpu = _timed(lambda: _finish(
            _vitrina(["reindex", str(catalog), "--out", str(full_root), "-q", "--json", *flags], home)))

        def killed() -> int:
            """Runs with progress bars on stderr; returns the photos decoded when killed (the encoder is at
            most a 128-photo window behind: what the killed run had encoded, within that)."""
            process = _vitrina(["reindex", str(catalog), "--out", str(resumed_root), "--json", *flags], home)
            time.sleep(full_s / 2)
            process.send_signal(signal.SIGKILL)
            _, err = process.communicate()
            counts = re.findall(r"decode: (\d+)image", err)
            return int(counts[-1]) if counts else 0

        decoded, _, killed_cpu = _timed(killed)
        resumed, resumed_s, resumed_cpu = _timed(lambda: _finish(_vitrina(
            ["reindex", str(catalog), "--out", str(resumed_root), "-q", "--json", "--resume", *flags], home)))
        size_used = -(-full["products"] // full["shards"])  # products per shard (the last one may be short)
        resumed_kept = min(full["products"], resumed["resumed_shards"] * size_used)
        same = all(np.array_equal(np.load(Path(full["path"]) / f"{space}.vectors.npy"),
                                  np.load(Path(resumed["path"]) / f"{space}.vectors.npy")) for space in ("text", "image"))
        results.append({"shard_size": size, "shards": full["shards"], "full_s": round(full_s, 1),
                        "killed_at_s": round(full_s / 2, 1), "resumed_shards": resumed["resumed_shards"],
                        "resumed_s": round(resumed_s, 1), "ratio": round(resumed_s / full_s, 3),
                        "full_cpu_s": round(full_cpu, 1), "killed_cpu_s": round(killed_cpu, 1),
                        "resumed_cpu_s": round(resumed_cpu, 1), "cpu_ratio": round(resumed_cpu / full_cpu, 3),
                        "redone_share": round((killed_cpu + resumed_cpu - full_cpu) / full_cpu, 3),
                        "encoded_when_killed": decoded, "kept_products": min(decoded, resumed_kept),
                        "redone_products": max(0, decoded - resumed_kept),
                        "redone_products_share": round(max(0, decoded - resumed_kept) / full["products"], 3),
                        "identical_vectors": bool(same)})
        print(json.dumps(results[-1]), flush=True)
        for root in (full_root, resumed_root):
            shutil.rmtree(root, ignore_errors=True)
    return results


def million_vectors(n: int, seed: int = 0) -> np.ndarray:
    """n normalised vectors: real text embeddings repeated with noise (cosine about 0.95 to their source)."""
    base = np.load(DEFAULT_OUT / "shop10k" / "text.vectors.npy").astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        chunk = base[np.arange(start, stop) % len(base)] + rng.normal(0, 0.3 / np.sqrt(base.shape[1]), (stop - start, base.shape[1])).astype(np.float32)
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def ann(factories: list[str], n: int, queries: int = 1000) -> list[dict]:
    x = million_vectors(n)
    rows = np.arange(n, dtype=np.int64)
    probe = sample_queries(x, queries, seed=1)  # not the tuning queries (seed 0)
    truth = exact_neighbours(probe, x, rows, 10)
    results = []
    for factory in factories:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        index = ProductIndex.build(x, rows, factory)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tuned = tune_search(index, x, rows, target=0.95)
        tune_s = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        index.search(probe[:50], 10)
        t0 = time.perf_counter()
        found = index.search(probe, 10)[1]
        search_s = time.perf_counter() - t0
        size = len(faiss.serialize_index(index._cpu))
        results.append({
            "factory": factory, "vectors": n, "build_s": round(build_s, 1), "tune_s": round(tune_s, 1),
            "tuned": tuned.to_json() if tuned else None, "recall_at_10": round(recall_at_k(found, truth), 4),
            "qps_1_thread": round(queries / search_s, 0), "bytes_per_vector": round(size / n, 1),
        })
        print(json.dumps(results[-1]), flush=True)
        del index
    return results


def sizing(results: list[dict], n: int, target: int = 10_000_000) -> list[list]:
    """10M estimates: memory scales with n; adds scale with n (training is fixed); IVF latency grows with
    the vectors per list unless nlist grows too (sqrt rule), HNSW latency with log n."""
    rows = []
    for r in results:
        scale = target / n
        memory_gb = r["bytes_per_vector"] * target / 1e9
        build = r["build_s"] * scale
        qps = r["qps_1_thread"] / (np.log(target) / np.log(n)) if r["factory"].startswith("HNSW") else r["qps_1_thread"] / np.sqrt(scale)
        rows.append([r["factory"], r["bytes_per_vector"], f"{memory_gb:.1f}", f"{build / 60:.0f}", f"{1000 / qps:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", default=["pipeline", "ann"])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--factories", nargs="*", default=list(FACTORIES))
    parser.add_argument("--shard-sizes", nargs="*", default=["auto", "10000"], help="for --only resume")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result_file = args.out / "reindex.json"
    results = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if "pipeline" in args.only:
        results["pipeline"] = pipeline(args.out)
        print(json.dumps(results["pipeline"], indent=2), flush=True)
    if "ann" in args.only:
        results["ann"] = ann(args.factories, args.vectors)
    if "resume" in args.only:
        results["resume"] = resume(args.out, args.shard_sizes)
    result_file.write_text(json.dumps(results, indent=2))
    if "pipeline" in results:
        p = results["pipeline"]
        print(markdown_table(["products", "pure encoder s", "re-index s (no model load)", "ratio", "products/s", "unchanged re-run s"],
                             [[p["products"], p["pure_encoder"]["total_s"], p["reindex_without_setup_s"], p["ratio"],
                               p["products_per_s"], p["unchanged_rerun_s"]]]))
    if "resume" in results:
        print(markdown_table(["--shard-size", "shards", "full s (CPU s)", "killed at s", "encoded when killed",
                              "kept by checkpoints", "redone", "resumed s (CPU s)", "resumed / full: wall, CPU",
                              "identical vectors"],
                             [[r["shard_size"], r["shards"], f"{r['full_s']} ({r['full_cpu_s']})", r["killed_at_s"],
                               r["encoded_when_killed"], r["kept_products"],
                               f"{r['redone_products']} ({r['redone_products_share']:.0%})",
                               f"{r['resumed_s']} ({r['resumed_cpu_s']})", f"{r['ratio']}, {r['cpu_ratio']}",
                               r["identical_vectors"]] for r in results["resume"]]))
    if "ann" in results:
        a = results["ann"]
        print(markdown_table(["index", "vectors", "build s", "tuned", "recall@10", "QPS (1 thread)", "bytes/vector"],
                             [[r["factory"], r["vectors"], r["build_s"], f"{r['tuned']['parameter']}={r['tuned']['value']}" if r["tuned"] else "-",
                               r["recall_at_10"], r["qps_1_thread"], r["bytes_per_vector"]] for r in a]))
        print(markdown_table(["index", "bytes/vector", "10M memory GB", "10M build min (2 cores)", "10M query ms (1 thread)"],
                             sizing(a, a[0]["vectors"])))


if __name__ == "__main__":
    main()
