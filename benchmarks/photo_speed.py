"""Bulk photo indexing, whole process (issue 19): `vitrina index` of fashion products with photos, from
Python start to exit, per backend, in interleaved rounds; then a parity check of the image vectors.

Contenders (each a fresh `python -m vitrina index CATALOG --out DIR -q ...` process):
  default       the defaults (ONNX backend; catalog text and photos on OpenVINO, bf16 where the CPU has it)
  openvino      --runtime openvino: OpenVINO for every graph (the same catalog vectors as the default since issue 19
                session 3)
  onnxruntime   --runtime onnxruntime: exported image graph on ONNX Runtime fp32 (the path before issue 19)
  torch         --backend torch: PyTorch (TorchScript on the CPU)

Parity: the image vectors of each contender against those of `onnxruntime` (mean and min cosine per product) and
fashion image-lookup precision@10 (a product's stored image vector retrieves its 10 nearest, itself left
out, exact cosine; a hit is relevant when it shares the articleType; as benchmarks/RESULTS.md "Fashion image
lookups"), for each contender. CPU seconds (user + system of the process) are printed beside the wall time: on
a shared machine they move less with the load than the wall time does. Passes when mean cosine >= 0.99 and precision@10 is within 1% of onnxruntime's.
The colour descriptors of every contender must be equal (same decoding).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_speed.py                # 1,500 products, 2 rounds, all four
    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_speed.py --contenders default,onnxruntime,torch   # the targets, ~3 min quiet
    git archive 2117f89 | tar -x -C /tmp/before    # the code before issue 19, as the contender `before`:
    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_speed.py --before /tmp/before
    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_speed.py --limit 8083 --rounds 1 --contenders openvino,onnxruntime
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchutil import DATA, DEFAULT_OUT, REPO, markdown_table, subset_catalog
from vitrina.index.store import read_vectors

FASHION_CSV = DATA / "fashion" / "products.csv"
CONTENDERS = {"default": [], "openvino": ["--runtime", "openvino"], "onnxruntime": ["--runtime", "onnxruntime"],
              "torch": ["--backend", "torch"]}
K = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=1500, help="first N fashion products (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per contender, interleaved (default %(default)s)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "photo-speed", help="work folder (default %(default)s)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run (fills the model caches)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--before", type=Path, help="a checkout of an older Vitrina (e.g. `git archive 2117f89`): "
                        "adds the contender `before`, its defaults")
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR",
                        help="adds the contender NAME: the defaults of the Vitrina checked out in DIR (repeatable)")
    return parser.parse_args(argv)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def run_index(catalog: Path, out: Path, flags: Sequence[str], code: Path = REPO) -> tuple[float, float]:
    """Wall seconds of one `vitrina index` process, start to exit, and the CPU seconds (user + system) it used;
    `code`: the checkout whose Vitrina runs."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "vitrina", "index", str(catalog), "--out", str(out), "--image-root", str(DATA), "-q", *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True)  # cwd: `-m` puts it first on sys.path
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def article_types(catalog: Path) -> list[str]:
    with catalog.open(newline="", encoding="utf-8") as f:
        return [row["articleType"] for row in csv.DictReader(f)]


def image_vectors(index: Path, count: int) -> np.ndarray:
    """The stored image vector of each product, in catalog order (one photo per product)."""
    vectors, rows = read_vectors(index, "image")
    out = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    out[np.asarray(rows)] = vectors
    return out


def colour_vectors(index: Path) -> np.ndarray:
    vectors, rows = read_vectors(index, "colour")
    return np.asarray(vectors)[np.argsort(np.asarray(rows), kind="stable")]


def precision_at_k(vectors: np.ndarray, labels: Sequence[str], k: int = K) -> float:
    """Mean share of a product's k nearest (itself left out, exact cosine) that share its label."""
    labels_arr = np.asarray(labels)
    hits = 0.0
    for start in range(0, len(vectors), 1024):
        scores = vectors[start : start + 1024] @ vectors.T
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        hits += (labels_arr[top] == labels_arr[start : start + len(scores), None]).sum()
    return hits / (len(vectors) * k)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    checkouts = {"before": args.before} if args.before else {}
    for item in args.checkout:
        name, _, folder = item.partition("=")
        if not name or not folder or not Path(folder).is_dir():
            raise SystemExit(f"--checkout {item!r}: give NAME=DIR with DIR a Vitrina checkout")
        checkouts[name] = Path(folder)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()] + list(checkouts)
    code = {name: REPO for name in names} | {name: folder.resolve() for name, folder in checkouts.items()}
    flags = CONTENDERS | {name: [] for name in checkouts}
    unknown = [n for n in names if n not in flags]
    if unknown:
        raise SystemExit(f"unknown contender {unknown[0]!r}; choose from {', '.join(CONTENDERS)}")
    catalog = subset_catalog(FASHION_CSV, args.limit, args.out, image_field="image")
    count = len(article_types(catalog))
    print(f"{count} fashion products with photos; contenders {', '.join(names)}; {args.rounds} round(s); "
          f"load average {loadavg()}", flush=True)
    if not args.no_warmup:
        for name in [n for n in names if n != "torch"]:
            run_index(catalog, args.out / f"index-{name}", flags[name], code[name])  # fills the ONNX / OpenVINO caches
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    loads: list[str] = []
    for round_number in range(args.rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            loads.append(loadavg())
            seconds, cpu_seconds = run_index(catalog, args.out / f"index-{name}", flags[name], code[name])
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            print(f"round {round_number + 1} {name}: {seconds:.1f} s ({count / seconds:.0f} products/s), "
                  f"{cpu_seconds:.1f} CPU s, load average before {loads[-1]}", flush=True)
    loads.append(loadavg())
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    rows = []
    for name in names:
        row = [name, f"{median[name]:.1f}", f"{count / median[name]:.0f}"]
        row += [f"{median['torch'] / median[name]:.2f}x" if "torch" in median else "-"]
        row += [f"{median['onnxruntime'] / median[name]:.2f}x" if "onnxruntime" in median else "-"]
        row += [f"{median_cpu[name]:.1f}", f"{1000 * median_cpu[name] / count:.1f}"]
        row += [f"{median_cpu['torch'] / median_cpu[name]:.2f}x" if "torch" in median_cpu else "-"]
        rows.append(row)
    print()
    print(markdown_table(["contender", "median s (whole process)", "products/s", "vs torch", "vs onnxruntime",
                          "CPU s", "CPU ms/product", "CPU vs torch"], rows))
    print(f"load average during the rounds: {' '.join(loads)}")

    labels = article_types(catalog)
    vectors = {name: image_vectors(args.out / f"index-{name}", count) for name in names}
    precision = {name: precision_at_k(v, labels) for name, v in vectors.items()}
    reference = "onnxruntime" if "onnxruntime" in names else names[0]
    parity = []
    passed = True
    for name in names:
        cosine = (vectors[name] * vectors[reference]).sum(axis=1)
        change = (precision[name] - precision[reference]) / precision[reference]
        ok = cosine.mean() >= 0.99 and abs(change) <= 0.01
        passed &= bool(ok)
        parity.append([name, f"{precision[name]:.4f}", f"{change:+.2%}", f"{cosine.mean():.5f}", f"{cosine.min():.4f}",
                       "ok" if ok else "FAIL"])
    colours = {name: colour_vectors(args.out / f"index-{name}") for name in names}
    same_colour = all(np.array_equal(colours[name], colours[reference]) for name in names)
    print()
    print(markdown_table(["contender", "precision@10 (same articleType)", f"vs {reference}", f"cosine to {reference}, mean",
                          "min", "parity"], parity))
    print(f"colour descriptors identical across contenders: {same_colour}")
    print(f"parity {'PASSED' if passed and same_colour else 'FAILED'}")
    if args.json:
        args.json.write_text(json.dumps({"products": count, "seconds": times, "cpu_seconds": cpu, "median": median, "loadavg": loads,
                                         "precision_at_10": precision, "parity_passed": passed and same_colour}, indent=2))


if __name__ == "__main__":
    main()
