"""Empty results on Home Depot: random letter strings should get none, real queries should keep theirs.

The random-string generator (`random_strings`), seeded: for each string, a Home Depot dev query is drawn
(`random.Random(seed)`), and every one of its whitespace-separated words is replaced by as many letters
drawn uniformly from a-z. So the strings have the word counts and word lengths of real queries ("wood
screws 2 in" -> "qhvt xmfkwc o pr"). The index calibrates its floor on other probes (engine.build.calibrate:
windows of catalog text and their letter-scrambled copies, seed 17), never on these strings or queries.

Figures, all through `SearchSession.search` in hybrid mode (the default), k=10:
  random strings with no results      target >= 90% of 200
  dev queries with no results         target <= 2% (all 8,960 unless --limit)
  nDCG@10 of the dev queries          today's ranking (`retrieve`, no floor) vs with the floor (an emptied
                                      query scores 0); target >= 0.99x
and, to show why dense mode has no floor: the share of random strings and of dev queries whose best
dense similarity alone is below the floor; and how often typo correction changes a random string.

    .venv/bin/python benchmarks/empty_results.py --index benchmarks/out/hd-hybrid
    .venv/bin/python benchmarks/empty_results.py --index benchmarks/out/hd-hybrid --limit 2000
    .venv/bin/python benchmarks/empty_results.py --index benchmarks/out/demo-text --strings-only
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import read_qrels
from vitrina.engine.evaluate.relevance import ndcg_at_k
from vitrina.engine.query.calibration import best_coverage, calibration_of
from vitrina.engine.query.search import SearchSession

QRELS = DATA / "homedepot" / "qrels_dev.csv"
K = 10
LETTERS = "abcdefghijklmnopqrstuvwxyz"
BATCH = 256


def random_strings(queries: list[str], count: int, seed: int) -> list[str]:
    """`count` strings shaped like random real queries: each word replaced by random letters of its length."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = rng.choice(queries).split()
        out.append(" ".join("".join(rng.choice(LETTERS) for _ in word) for word in words))
    return out


def searched(session: SearchSession, queries: list[str]) -> tuple[list[list[int]], list[list[int]], list[bool], float]:
    """Per query: the rows `search` answers (floor on), the rows of today's ranking (`retrieve`), whether it was
    emptied by the floor, and the seconds `search` took."""
    with_floor, today, emptied, seconds = [], [], [], 0.0
    for start in range(0, len(queries), BATCH):
        batch = queries[start:start + BATCH]
        began = time.perf_counter()
        answers = session.search(batch, k=K, mode="hybrid")
        seconds += time.perf_counter() - began
        _, rows = session.retrieve(batch, K, "text", "hybrid")
        for answer, ranked in zip(answers, rows):
            with_floor.append([session.products.row_of(h.id) for h in answer])
            today.append([int(r) for r in ranked if r >= 0])
            emptied.append(not answer and bool(answer.suggestions))
        print(f"  {min(start + BATCH, len(queries))}/{len(queries)} searched", flush=True)
    return with_floor, today, emptied, seconds


def dense_best(session: SearchSession, queries: list[str]) -> np.ndarray:
    vectors = session.encode_queries([session.dense_text(q, "hybrid") for q in queries], "text")
    scores, rows = session.directory.spaces["text"].search(vectors, 1)
    return np.where(rows[:, 0] >= 0, scores[:, 0], -1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=DEFAULT_OUT / "hd-hybrid", help="an index of homedepot/products.csv")
    parser.add_argument("--strings", type=int, default=200)
    parser.add_argument("--limit", type=int, default=None, help="a seeded random sample of this many dev queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "empty_results.json")
    parser.add_argument("--strings-only", action="store_true",
                        help="only the random strings (any catalog's index: the demo, fashion), no dev queries")
    args = parser.parse_args()

    qrels = read_qrels(QRELS)
    qids = sorted(qrels.queries)
    if args.limit is not None and args.limit < len(qids):
        qids = sorted(random.Random(args.seed).sample(qids, args.limit))
    dev = [qrels.queries[q] for q in qids]
    strings = random_strings([qrels.queries[q] for q in sorted(qrels.queries)], args.strings, args.seed)
    print(f"{len(strings)} random strings, e.g. {strings[:5]}" + ("" if args.strings_only else f"; {len(dev)} dev queries"))

    session = SearchSession(args.index, VitrinaConfig(progress=False))
    began = time.perf_counter()
    calibration = calibration_of(session, "text")
    calibrate_seconds = time.perf_counter() - began
    print(f"calibration: {calibration} ({calibrate_seconds:.1f} s)")

    _, _, strings_empty, _ = searched(session, strings)
    if args.strings_only:
        print(f"\n{args.index}: floor {calibration.floor:.4f}, high {calibration.high:.4f}; random strings with no "
              f"results: {sum(strings_empty)} of {len(strings)} ({100 * np.mean(strings_empty):.1f}%); not emptied: "
              f"{[s for s, e in zip(strings, strings_empty) if not e][:10]}")
        return
    floored, today, dev_empty, seconds = searched(session, dev)
    ids = session.products.ids

    def ndcg(lists: list[list[int]]) -> float:
        return float(np.mean([ndcg_at_k([ids[r] for r in rows], qrels.judgements[q], K) for rows, q in zip(lists, qids)]))

    ndcg_today, ndcg_floor = ndcg(today), ndcg(floored)
    same_order = sum(a == b for a, b, e in zip(floored, today, dev_empty) if not e)
    string_best, dev_best = dense_best(session, strings), dense_best(session, dev)
    corrected = sum(session.corrected_query(s) is not None for s in strings)
    lexical_half = sum(best_coverage(session, s) >= 0.5 for s in strings)
    rows = [
        ["random strings with no results", f"{sum(strings_empty)} of {len(strings)}",
         f"{100 * np.mean(strings_empty):.1f}%", ">= 90%"],
        ["dev queries with no results", f"{sum(dev_empty)} of {len(dev)}", f"{100 * np.mean(dev_empty):.2f}%", "<= 2%"],
        ["nDCG@10 dev, today's ranking", "", f"{ndcg_today:.4f}", ""],
        ["nDCG@10 dev, with the floor", "", f"{ndcg_floor:.4f} ({ndcg_floor / ndcg_today:.4f}x)", ">= 0.99x"],
        ["dense floor alone: random strings below", "", f"{100 * np.mean(string_best < calibration.floor):.1f}%", ""],
        ["dense floor alone: dev queries below", "", f"{100 * np.mean(dev_best < calibration.floor):.2f}%", ""],
        ["random strings changed by typo correction", f"{corrected} of {len(strings)}", "", ""],
        ["random strings half covered lexically", f"{lexical_half} of {len(strings)}", "", ""],
    ]
    print(f"\nHybrid, {args.index}, seed {args.seed}; floor {calibration.floor:.4f}, high {calibration.high:.4f}")
    print(markdown_table(["figure", "count", "value", "target"], rows))
    print(f"non-empty dev answers in today's order: {same_order} of {len(dev) - sum(dev_empty)}; "
          f"search {1000 * seconds / len(dev):.1f} ms/query")
    emptied = [q for q, e in zip(dev, dev_empty) if e]
    print(f"emptied dev queries (first 20): {emptied[:20]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "index": str(args.index), "seed": args.seed, "strings": len(strings), "dev_queries": len(dev),
        "calibration": calibration.to_json(), "calibrate_seconds": calibrate_seconds,
        "strings_empty": int(sum(strings_empty)), "dev_empty": int(sum(dev_empty)),
        "ndcg@10": {"today": ndcg_today, "floor": ndcg_floor}, "same_order": same_order,
        "dense_floor_alone": {"strings_below": float(np.mean(string_best < calibration.floor)),
                              "dev_below": float(np.mean(dev_best < calibration.floor))},
        "strings_corrected": corrected, "strings_half_covered": lexical_half,
        "emptied_dev_queries": emptied, "strings_not_emptied": [s for s, e in zip(strings, strings_empty) if not e],
        "search_ms_per_query": 1000 * seconds / len(dev),
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
