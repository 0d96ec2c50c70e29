"""Merchandising rules at scale: what 10,000 rules cost per query on the Home Depot index.

The rules (seeded, deterministic): 6,000 `query` rules, each the exact text of a distinct Home Depot dev query
(or a made-up query when there are fewer), pinning a random product at position 1-5; 3,900 `contains` rules on
one or two title words, half hiding a random product, half burying products by one of 10 distinct conditions
(a title equal to a random product's title: the index has no other column); and 100 `any` rules hiding a random
product each (so every query fires at least 100 rules, a worst case: a shop has a handful of those).

Figures, over the dev queries (--limit of them, seeded sample):
  bind         seconds to check the 10,000 rules against the index (strict: products, columns, values)
  match        microseconds per query to find the rules a query fires (the exact dict, the word-run dict, any)
  fired        rules fired per query (mean), and the share of queries firing a pattern rule (beyond `any`)
  search       milliseconds per query of a lexical search (k=10) without rules, and with the 10,000 rules
               (matching, the deeper retrieval that hiding and burying need, and applying them)

    .venv/bin/python benchmarks/merchandising.py --index benchmarks/out/hd-hybrid --limit 1000
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from pathlib import Path

from benchutil import DATA, REPO, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.rules import parse_rules
from vitrina.engine.query.rules.apply import MerchandisingRules
from vitrina.engine.query.search import SearchSession

QRELS = DATA / "homedepot" / "qrels_dev.csv"
DEFAULT_INDEX = REPO / "benchmarks" / "out" / "hd-hybrid"


def dev_queries() -> list[str]:
    with QRELS.open(newline="") as f:
        return list(dict.fromkeys(row["query"] for row in csv.DictReader(f)))


def make_rules(session: SearchSession, queries: list[str], seed: int) -> dict:
    """10,000 rules as described in the module's docstring."""
    rng = random.Random(seed)
    ids = session.products.ids
    titles = session.products.table.column("title").to_pylist()
    words = sorted({w for t in rng.sample(titles, 2000) for w in str(t).casefold().split() if w.isalpha() and len(w) > 3})
    conditions = [{"title": titles[rng.randrange(len(titles))]} for _ in range(10)]
    exact = (queries + [f"made up query {i}" for i in range(6000)])[:6000]
    rules = [{"id": f"q{i}", "query": q, "pin": [{"product": ids[rng.randrange(len(ids))], "position": rng.randint(1, 5)}]}
             for i, q in enumerate(exact)]
    for i in range(3900):
        pattern = " ".join(rng.sample(words, 1 + i % 2))
        action = {"hide": [ids[rng.randrange(len(ids))]]} if i % 2 else {"bury": conditions[i % 10]}
        rules.append({"id": f"c{i}", "contains": pattern, **action})
    rules += [{"id": f"a{i}", "any": True, "hide": [ids[rng.randrange(len(ids))]]} for i in range(100)]
    return {"rules": rules}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="an index of homedepot/products.csv (read only)")
    p.add_argument("--limit", type=int, default=1000, help="dev queries measured (a seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    session = SearchSession(args.index, VitrinaConfig(progress=False))
    queries = dev_queries()
    sample = random.Random(args.seed).sample(queries, min(args.limit, len(queries)))
    ruleset = parse_rules(make_rules(session, queries, args.seed), "generated")
    started = time.perf_counter()
    bound = MerchandisingRules(ruleset, session, strict=True)
    bind_s = time.perf_counter() - started

    started = time.perf_counter()
    fired = [bound.fired(q) for q in sample]
    match_us = (time.perf_counter() - started) / len(sample) * 1e6
    beyond_any = sum(any(r.kind != "any" for r in f) for f in fired) / len(sample)

    def search_ms() -> float:
        for q in sample[:20]:  # warm up (the typo corrector's lookup, condition masks)
            session.search(q, 10, mode="lexical")
        times = []
        for q in sample:
            t = time.perf_counter()
            session.search(q, 10, mode="lexical")
            times.append(time.perf_counter() - t)
        return statistics.mean(times) * 1e3

    session.__dict__["rules"] = None
    plain_ms = search_ms()
    session.__dict__["rules"] = bound
    ruled_ms = search_ms()
    rows = [["rules", f"{len(ruleset):,}"], ["products", f"{len(session.products):,}"],
            ["queries measured", f"{len(sample):,}"], ["bind (strict check), s", f"{bind_s:.2f}"],
            ["match, µs / query", f"{match_us:.1f}"],
            ["rules fired / query (mean)", f"{statistics.mean(len(f) for f in fired):.1f}"],
            ["queries firing a query/contains rule", f"{beyond_any:.1%}"],
            ["lexical search k=10, no rules, ms / query", f"{plain_ms:.2f}"],
            ["lexical search k=10, 10,000 rules, ms / query", f"{ruled_ms:.2f}"]]
    print(markdown_table(["figure", "value"], rows))


if __name__ == "__main__":
    main()
