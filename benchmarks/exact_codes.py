"""Exact product codes first (engine.query.exact) on Home Depot: no loss on natural queries, and code lookups.

Two measurements through the one search composition (`plan_text_search` / `run_text_search`, relevance sort),
each with exact matching off (`SearchSession.exact_match = False`, the search before) and on:

  dev queries   nDCG@10 on a seeded sample of Home Depot dev queries as judged (clean), and on the part of the
                sample that is one token (the only queries exact matching can change); with how many queries
                had an exact match at all; and nDCG@10 over every dev query (not only the sample) that has one
  code lookups  queries made of one product's code: for a seeded sample of products whose title holds a
                code-like token no other product holds (and that is no product's id), the code typed as is, in upper case, and without its
                separators ("RG6-KIT" -> "rg6kit"); the share where that product ranks first (hit@1) and
                its mean reciprocal rank in the top 10

    .venv/bin/python benchmarks/exact_codes.py --index benchmarks/out/hd-hybrid --limit 2000 --codes 300
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Sequence

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import read_qrels
from vitrina.engine.evaluate.relevance import ndcg_at_k
from vitrina.engine.query.compose import plan_text_search, run_text_search
from vitrina.engine.query.exact import _TOKEN, code_key, is_code
from vitrina.engine.query.search import SearchSession

QRELS = DATA / "homedepot" / "qrels_dev.csv"
K = 10


def ranked_ids(session: SearchSession, queries: Sequence[str], mode: str, exact: bool) -> list[list[str]]:
    session.exact_match = exact
    session.__dict__.pop("exact_codes", None)  # the lookup is built (or not) for this setting
    out = []
    for start in range(0, len(queries), 256):
        search = plan_text_search(session, list(queries[start:start + 256]), K, mode=mode)
        vectors = session.encode_queries(search.dense_queries, search.space) if search.needs_vectors else None
        out += [[h.id for h in hits] for hits in run_text_search(session, search, vectors)]
    return out


def code_queries(session: SearchSession, count: int, seed: int) -> list[tuple[str, str]]:
    """(query, product id): codes that one product alone holds (by the lookup) and that are no product's id,
    typed three ways."""
    texts = session.directory.content.texts if session.directory.content is not None else None
    if texts is None:
        from vitrina.engine.build.in_place import derived_content

        texts = derived_content(session.directory).texts
    session.exact_match = True
    codes = session.exact_codes
    unique: dict[str, tuple[str, int]] = {}
    for row, text in enumerate(texts):
        for token in sorted(set(_TOKEN.findall(text))):
            key = code_key(token)
            if is_code(key) and key not in codes.ids and list(codes.rows_of(token)) == [row]:
                unique.setdefault(key, (token, row))
    picked = random.Random(seed).sample(sorted(unique.values()), min(count, len(unique)))
    out = []
    for token, row in picked:
        pid = session.products.ids[row]
        out += [(token, pid), (token.upper(), pid), (code_key(token), pid)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="an index of homedepot/products.csv")
    parser.add_argument("--mode", choices=("lexical", "dense", "hybrid"), default="hybrid")
    parser.add_argument("--limit", type=int, default=2000, help="dev queries sampled (seeded)")
    parser.add_argument("--codes", type=int, default=300, help="products whose code is looked up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "exact_codes.json")
    args = parser.parse_args()

    session = SearchSession(args.index, VitrinaConfig(progress=False))
    qrels = read_qrels(QRELS)
    qids = sorted(qrels.queries)
    if args.limit < len(qids):
        qids = sorted(random.Random(args.seed).sample(qids, args.limit))
    queries = [qrels.queries[q] for q in qids]
    one_token = [i for i, q in enumerate(queries) if len(q.split()) == 1]

    t0 = time.perf_counter()
    session.exact_match = True
    codes = session.exact_codes
    build_seconds = time.perf_counter() - t0
    fired = sum(len(codes.rows_of(q)) > 0 for q in queries)
    matched_qids = sorted(q for q, text in qrels.queries.items() if len(codes.rows_of(text)))  # of all dev queries

    results = {}
    for exact in (False, True):
        started = time.perf_counter()
        ranked = ranked_ids(session, queries, args.mode, exact)
        values = [ndcg_at_k(r, qrels.judgements[q], K) for r, q in zip(ranked, qids)]
        results[exact] = {"ndcg": sum(values) / len(values),
                          "ndcg_one_token": sum(values[i] for i in one_token) / max(1, len(one_token)),
                          "seconds": time.perf_counter() - started}
        ranked = ranked_ids(session, [qrels.queries[q] for q in matched_qids], args.mode, exact)
        results[exact]["ndcg_matched"] = (sum(ndcg_at_k(r, qrels.judgements[q], K) for r, q in zip(ranked, matched_qids))
                                          / max(1, len(matched_qids)))
    lookups = code_queries(session, args.codes, args.seed)
    for exact in (False, True):
        ranked = ranked_ids(session, [q for q, _ in lookups], args.mode, exact)
        ranks = [r.index(pid) + 1 if pid in r else None for r, (_, pid) in zip(ranked, lookups)]
        results[exact]["code_hit1"] = sum(r == 1 for r in ranks) / len(ranks)
        results[exact]["code_mrr"] = sum(1 / r for r in ranks if r) / len(ranks)

    off, on = results[False], results[True]
    print(f"{args.mode} ({args.index}), {len(queries)} Home Depot dev queries (seed {args.seed}), "
          f"{len(one_token)} of one token, {fired} with an exact match; exact-code lookup built in {build_seconds:.2f} s "
          f"({len(codes.ids)} ids, {len(codes.codes)} codes)")
    rows = [
        [f"nDCG@{K}, dev queries", f"{off['ndcg']:.4f}", f"{on['ndcg']:.4f}", f"{on['ndcg'] / off['ndcg']:.4f}"],
        [f"nDCG@{K}, one-token dev queries", f"{off['ndcg_one_token']:.4f}", f"{on['ndcg_one_token']:.4f}",
         f"{on['ndcg_one_token'] / max(off['ndcg_one_token'], 1e-9):.4f}"],
        [f"nDCG@{K}, the {len(matched_qids)} of all {len(qrels.queries)} dev queries with an exact match",
         f"{off['ndcg_matched']:.4f}", f"{on['ndcg_matched']:.4f}", ""],
        [f"code lookups ({len(lookups)}): hit@1", f"{off['code_hit1']:.3f}", f"{on['code_hit1']:.3f}", ""],
        [f"code lookups ({len(lookups)}): MRR@{K}", f"{off['code_mrr']:.3f}", f"{on['code_mrr']:.3f}", ""],
    ]
    print(markdown_table(["measure", "exact off", "exact on", "on / off"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "index": str(args.index), "mode": args.mode, "seed": args.seed, "queries": len(queries),
        "one_token": len(one_token), "exact_matches": fired,
        "all_dev_queries_with_exact_match": [qrels.queries[q] for q in matched_qids], "lookup_build_seconds": build_seconds,
        "off": off, "on": on, "code_examples": lookups[:15],
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
