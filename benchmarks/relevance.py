"""Home Depot relevance targets: hybrid vs BM25 vs dense, ANN vs exact search, and `eval text` speed.

Queries of qrels_dev.csv are split by `engine.finetune.heldout_bucket` (a hash of the query id):
  train  bucket >= 0.3   the text model is fine-tuned on these (`vitrina train-text`, --heldout 0.3)
  tune   bucket <  0.1   the hybrid fusion settings are chosen on these
  test   0.1 <= bucket < 0.3   every reported quality figure comes from these alone

Inputs are two index directories of homedepot/products.csv built by `vitrina index` (default text
model, BM25): BASE as built, TRAINED after `vitrina train-text TRAINED --qrels qrels_dev.csv`.

    .venv/bin/python benchmarks/relevance.py --base benchmarks/out/hd-hybrid --trained benchmarks/out/hd-trained
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import Qrels, evaluate_text, read_qrels
from vitrina.engine.learn.finetune import heldout_bucket
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexConfig, ProductIndex
from vitrina.index.hybrid import HybridConfig

QRELS = DATA / "homedepot" / "qrels_dev.csv"
K = 10
TUNE, HELDOUT = 0.1, 0.3
CANDIDATE_SETTINGS = [HybridConfig(method="blend", dense_weight=w / 10) for w in range(1, 10)] + [
    HybridConfig(method="blend", dense_weight=w / 10, coverage_weight=c)
    for w in range(3, 9) for c in (0.5, 1.0, 1.5, 2.0)] + [
    HybridConfig(method="rrf", dense_weight=w, rrf_k=rrf_k) for w in (0.3, 0.5, 0.7) for rrf_k in (10, 60)
]


def split(qrels: Qrels) -> dict[str, Qrels]:
    ids = {"tune": [], "test": [], "train": []}
    for qid in qrels.queries:
        b = heldout_bucket(qid)
        ids["tune" if b < TUNE else "test" if b < HELDOUT else "train"].append(qid)
    return {name: qrels.subset(q) for name, q in ids.items()}


def describe(settings: HybridConfig) -> str:
    if settings.method == "rrf":
        return f"RRF k={settings.rrf_k}, dense weight {settings.dense_weight}"
    coverage = f", coverage weight {settings.coverage_weight}" if settings.coverage_weight else ""
    return f"blend, dense weight {settings.dense_weight}{coverage}"


def tune(session: SearchSession, qrels: Qrels) -> tuple[HybridConfig, list[tuple[str, float]]]:
    """nDCG@10 of each candidate fusion setting on the tune split; the best one."""
    rows = []
    for settings in CANDIDATE_SETTINGS:
        session.config = replace(session.config, hybrid=settings)
        ev = evaluate_text(session, qrels, K, methods=["hybrid"], progress=False)
        rows.append((settings, ev.method("hybrid").mean(f"ndcg@{K}")))
        print(f"  tune: {describe(settings):40s} nDCG@10 {rows[-1][1]:.4f}", flush=True)
    best = max(rows, key=lambda r: r[1])[0]
    session.config = replace(session.config, hybrid=HybridConfig())
    return best, [(describe(s), v) for s, v in rows]


def ann_loss(session: SearchSession, qrels: Qrels, factory: str) -> dict:
    """nDCG@10 of dense search through `factory` against exact search, over the same stored vectors."""
    space = session.directory.spaces["text"]
    built = ProductIndex.build(np.asarray(space.vectors), space.rows, factory, IndexConfig(use_gpu=False))
    original = space.index
    try:
        space.index = built
        ev = evaluate_text(session, qrels, K, methods=["dense"], exact=True, progress=False)
    finally:
        space.index = original
    approx, exact = ev.method("dense").mean(f"ndcg@{K}"), ev.method("dense-exact").mean(f"ndcg@{K}")
    return {"factory": built.factory, "ndcg_index": approx, "ndcg_exact": exact, "loss_pct": 100 * (exact - approx) / exact}


def timed_cli(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "vitrina"), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=DEFAULT_OUT / "hd-hybrid")
    parser.add_argument("--trained", type=Path, default=DEFAULT_OUT / "hd-trained")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    qrels = read_qrels(QRELS)
    splits = split(qrels)
    print({name: len(q.queries) for name, q in splits.items()})
    results: dict = {"splits": {name: len(q.queries) for name, q in splits.items()}}
    config = VitrinaConfig(progress=False)
    trained = SearchSession(args.trained, config)
    base = SearchSession(args.base, config)

    best, sweep = tune(trained, splits["tune"])
    results["tuning"] = {"sweep": sweep, "best": asdict(best), "default": asdict(HybridConfig())}
    print(f"best on tune: {describe(best)}; code default: {describe(HybridConfig())}")

    table = []
    for name, session in (("base model", base), ("fine-tuned", trained)):
        ev = evaluate_text(session, splits["test"], K, progress=False)
        means = {m.name: m.summary(ev.metrics) for m in ev.methods}
        ndcg = {m: v[f"ndcg@{K}"] for m, v in means.items()}
        ratio = ndcg["hybrid"] / max(ndcg["lexical"], ndcg["dense"])
        results[name] = {"metrics": means, "hybrid_ratio": ratio, "notes": ev.notes}
        for m in ev.methods:
            v = means[m.name]
            table.append([name, m.label, f"{v['ndcg@10']:.4f}", f"{v['recall@10']:.4f}", f"{v['recall@100']:.4f}",
                          f"{v['mrr@10']:.4f}", f"{v['map@10']:.4f}"])
        print(f"{name}: nDCG@10 {ndcg}; hybrid / best single = {ratio:.3f}", flush=True)
    print(markdown_table(["text model", "method", "nDCG@10", "recall@10", "recall@100", "MRR@10", "mAP@10"], table))

    results["ann"] = [ann_loss(trained, splits["test"], f) for f in (trained.manifest.space("text").factory, "HNSW32,Flat")]
    for row in results["ann"]:
        print(f"ANN {row['factory']}: nDCG@10 {row['ndcg_index']:.4f} vs exact {row['ndcg_exact']:.4f} "
              f"(loss {row['loss_pct']:.2f}%)")

    if not args.skip_speed:
        results["speed_s"] = {
            "eval text, base index, all queries": timed_cli("eval", "text", str(args.base), "--qrels", str(QRELS), "-q"),
            "eval text, fine-tuned index, --include-trained (all queries)": timed_cli(
                "eval", "text", str(args.trained), "--qrels", str(QRELS), "-q", "--include-trained"),
        }
        for what, seconds in results["speed_s"].items():
            print(f"{what}: {seconds:.1f} s wall")
    out = DEFAULT_OUT / "relevance.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
