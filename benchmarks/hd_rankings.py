"""Every Home Depot dev query through `SearchSession.search` (hybrid, k=10): nDCG@10, and the top-10 ids and
scores written to a JSON file, so two code versions (or two indexes) can be compared query by query.

    .venv/bin/python benchmarks/hd_rankings.py benchmarks/out/hd-hybrid /tmp/new.json [--compare /tmp/old.json]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/hd_rankings.py benchmarks/out/hd-hybrid /tmp/old.json
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchutil import DATA
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import read_qrels
from vitrina.engine.evaluate.relevance import ndcg_at_k
from vitrina.engine.query.search import SearchSession
from vitrina.index.product_index import set_search_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N queries")
    parser.add_argument("--compare", type=Path, default=None, help="another run's JSON: count identical rankings")
    args = parser.parse_args()
    set_search_threads(1)
    qrels = read_qrels(DATA / "homedepot" / "qrels_dev.csv")
    qids = list(qrels.queries)[: args.limit]
    session = SearchSession(args.index, VitrinaConfig(progress=False))
    rankings, ndcgs = {}, []
    started = time.perf_counter()
    for i in range(0, len(qids), 64):
        part = qids[i:i + 64]
        for qid, hits in zip(part, session.search([qrels.queries[q] for q in part], 10)):
            rankings[qid] = [(hit.id, round(hit.score, 5)) for hit in hits]
            ndcgs.append(ndcg_at_k([hit.id for hit in hits], qrels.judgements[qid], 10))
    args.out.write_text(json.dumps(rankings))
    print(f"{args.index}: {len(qids)} queries, nDCG@10 {np.mean(ndcgs):.5f} ({time.perf_counter() - started:.0f} s)")
    if args.compare is not None:
        other = json.loads(args.compare.read_text())
        shared = [q for q in rankings if q in other]
        ids = sum([h[0] for h in rankings[q]] == [h[0] for h in other[q]] for q in shared)
        exact = sum([list(h) for h in rankings[q]] == [list(h) for h in other[q]] for q in shared)
        print(f"vs {args.compare}: {ids} of {len(shared)} rankings with the same ids, {exact} with the same scores too")


if __name__ == "__main__":
    main()
