"""Every Home Depot dev query through `SearchSession.search` (hybrid, k=10): nDCG@10, and the top-10 ids and
scores written to a JSON file, so two code versions (or two indexes) can be compared query by query.

    .venv/bin/python benchmarks/hd_rankings.py benchmarks/out/hd-hybrid /tmp/new.json [--compare /tmp/old.json]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/hd_rankings.py benchmarks/out/hd-hybrid /tmp/old.json

--dense-batch N runs the queries as the server's micro-batch does: N encoded together, their dense leg searched in
one call (`SearchSession.dense_candidates`: FAISS, or one matrix product from MATMUL_MIN_BATCH queries on), then
each query composed alone with its candidates (`run_text_search(..., dense=)`).
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
from vitrina.engine.query.compose import dense_depth, plan_text_search, run_text_search
from vitrina.engine.query.search import DenseCandidates, SearchSession
from vitrina.index.product_index import set_search_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N queries")
    parser.add_argument("--dense-batch", type=int, default=None, metavar="N",
                        help="search the dense leg N queries at a time, as the server's micro-batch does")
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
        texts = [qrels.queries[q] for q in part]
        answers = session.search(texts, 10) if args.dense_batch is None else batched(session, texts, args.dense_batch)
        for qid, hits in zip(part, answers):
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


def batched(session: SearchSession, texts: list[str], size: int) -> list:
    """Each query's hits, its dense leg searched `size` queries at a time (the server's path)."""
    answers = []
    for start in range(0, len(texts), size):
        plans = [plan_text_search(session, [text], 10, None, None) for text in texts[start:start + size]]
        vectors = session.encode_queries([(p.dense_queries or p.queries)[0] for p in plans], plans[0].space)
        depth = dense_depth(session, plans[0])
        ahead = session.dense_candidates(vectors, plans[0].space, depth)
        for i, plan in enumerate(plans):
            dense = DenseCandidates(plan.space, depth, ahead.scores[i:i + 1], ahead.rows[i:i + 1])
            answers.append(run_text_search(session, plan, vectors[i:i + 1], None, dense=dense)[0])
    return answers


if __name__ == "__main__":
    main()
