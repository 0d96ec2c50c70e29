"""Float16 vector storage vs float32 (issue 19): top-10 overlap and nDCG@10 of dense and hybrid search on the
Home Depot dev queries, one index searched twice: as built (float32) and with its vectors stored as float16
(what `vitrina index --vector-dtype float16` writes), everything else equal.

    python benchmarks/vector_dtype_parity.py --index benchmarks/out/hd-hybrid --queries 2000

nDCG@10: graded relevance (rater means 1-3), unjudged products 0, as benchmarks/quality.py. Overlap: shared
products of the two top-10 lists over the longer one (1 where both are empty: a query below the floor).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QRELS = HERE.parent.parent / "shared" / "data" / "homedepot" / "qrels_dev.csv"


def ndcg_at_10(ranked: list[str], relevance: dict[str, float]) -> float:
    dcg = sum((2 ** relevance.get(p, 0.0) - 1) / np.log2(i + 2) for i, p in enumerate(ranked[:10]))
    ideal = sorted(relevance.values(), reverse=True)[:10]
    best = sum((2 ** g - 1) / np.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best else 0.0


def overlap_at_10(a: list[str], b: list[str]) -> float:
    """Shared products of two top-10 lists, over the longer list; 1 where both are empty (a query below the
    relevance floor answers nothing either way)."""
    longer = max(len(a), len(b))
    return len(set(a) & set(b)) / longer if longer else 1.0


def half_copy(index: Path, out: Path) -> Path:
    """A copy of `index` whose vectors are stored as float16 (and, for Flat spaces, no FAISS file)."""
    from vitrina.index.versions import resolve_index_path

    shutil.copytree(resolve_index_path(index), out)
    for vectors in out.glob("*.vectors.npy"):
        np.save(vectors, np.load(vectors).astype(np.float16))
        faiss_file = out / vectors.name.replace(".vectors.npy", ".faiss")
        if faiss_file.is_file() and '"factory": "Flat"' in (out / "manifest.json").read_text():
            faiss_file.unlink()  # built from the (float16) vectors at load, as a float16 index is written
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="a Home Depot index (float32 vectors)")
    parser.add_argument("--queries", type=int, default=2000, help="dev queries used (sorted by id)")
    args = parser.parse_args()
    from vitrina.engine.query.search import SearchSession

    judged: dict[str, dict[str, float]] = defaultdict(dict)
    text = {}
    with QRELS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            judged[row["query_id"]][row["product_id"]] = float(row["relevance"])
            text[row["query_id"]] = row["query"]
    ids = sorted(judged)[: args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        indexes = {"float32": args.index, "float16": half_copy(args.index, Path(tmp) / "half")}
        print("| mode | storage | nDCG@10 | top-10 overlap with float32 | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for mode in ("dense", "hybrid"):
            ranked = {}
            for name, path in indexes.items():
                session = SearchSession(path)
                start = time.perf_counter()
                ranked[name] = [[h.id for h in hits] for hits in session.search([text[i] for i in ids], k=10, mode=mode)]
                seconds = time.perf_counter() - start
                ndcg = float(np.mean([ndcg_at_10(r, judged[i]) for r, i in zip(ranked[name], ids)]))
                overlap = float(np.mean([overlap_at_10(a, b) for a, b in zip(ranked["float32"], ranked[name])]))
                print(f"| {mode} | {name} | {ndcg:.4f} | {overlap:.4f} | {seconds:.1f} |", flush=True)
    print(f"\n{len(ids)} Home Depot dev queries")


if __name__ == "__main__":
    main()
