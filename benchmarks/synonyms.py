"""Synonyms on Home Depot: what the dense leg should read, measured on the dev queries a shop's synonyms touch.

A small synonyms file a hardware shop could write (SHOP_SYNONYMS below: shoppers' words for catalog words,
abbreviations, one-word spellings) is applied to every Home Depot dev query; the queries at least one rule
matches are searched (hybrid, k=10) four ways:

  none                    no synonyms (the search before)
  lexical only            the BM25 leg expanded (rewritten query, equivalents at SYNONYM_WEIGHT), the dense
                          leg reading the query as typed
  both, dense rewritten   BM25 expanded; the dense leg reads the query as explicit rules rewrite it
                          (`Synonyms.dense_query`, what search does)
  both, dense + equiv.    BM25 expanded; the dense leg reads the rewritten query with the equivalents
                          appended (what search did first: it lost 3% here)
and, with the dense leg reading the query as typed, the added phrases' BM25 weight at 0.5, 0.7 and 1.0 (search
uses SYNONYM_WEIGHT, 0.9).

    .venv/bin/python benchmarks/synonyms.py --index benchmarks/out/hd-hybrid
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import read_qrels
from vitrina.engine.evaluate.relevance import ndcg_at_k
from vitrina.engine.query.search import SearchSession
from vitrina.index.synonyms import Synonyms

QRELS = DATA / "homedepot" / "qrels_dev.csv"
K = 10
SHOP_SYNONYMS = """# a hardware shop's synonyms (written for this benchmark, before measuring)
fridge, refrigerator
ac, air conditioner
tv, television
bbq, barbecue, grill
faucet, tap
lightbulb => light bulb
lawnmower => lawn mower
snowblower => snow blower
weedeater, weed eater => string trimmer
commode => toilet
drapes, curtains => curtain
sheetrock, drywall
bathtub, tub
caulk, sealant
outlet, receptacle
stepladder => step ladder
shopvac, shop vac => wet dry vacuum
fastener, screw
cupboard => cabinet
couch, sofa
timber, lumber
pail, bucket
chainsaw, chain saw
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="an index of homedepot/products.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "synonyms.json")
    args = parser.parse_args()

    session = SearchSession(args.index, VitrinaConfig(progress=False))
    lexical = session.directory.lexical
    synonyms = Synonyms.parse(SHOP_SYNONYMS, "SHOP_SYNONYMS")
    qrels = read_qrels(QRELS)
    qids = sorted(q for q, text in qrels.queries.items() if synonyms.expand(text) is not None)
    queries = [qrels.queries[q] for q in qids]
    print(f"{len(qids)} of {len(qrels.queries)} Home Depot dev queries match a rule of {len(synonyms.rules)}")

    class Weighted:
        """The synonyms with the lexical weight of added phrases set to `weight`."""

        def __init__(self, weight: float) -> None:
            self.weight, self.words = weight, synonyms.words

        def expand(self, query: str):
            expansion = synonyms.expand(query)
            return None if expansion is None else dataclasses.replace(expansion, weight=self.weight)

    def ndcg(expanded_lexical: bool, dense: str, weight: float | None = None) -> tuple[float, float]:
        lexical.synonyms = (synonyms if weight is None else Weighted(weight)) if expanded_lexical else None
        started = time.perf_counter()
        texts = []
        for query in queries:
            base = session.corrected_query(query, "hybrid") or query
            expansion = synonyms.expand(base)
            texts.append(base if dense == "typed" or expansion is None
                         else synonyms.dense_query(base) if dense == "rewritten"
                         else " ".join((expansion.text, *expansion.extras)))
        vectors = session.encode_queries(texts, "text")
        _, rows = session.retrieve(queries, K, "text", "hybrid", vectors)
        ranked = [[session.products.ids[r] for r in row if r >= 0] for row in rows]
        values = [ndcg_at_k(r, qrels.judgements[q], K) for r, q in zip(ranked, qids)]
        return sum(values) / len(values), time.perf_counter() - started

    figures = {
        "none": ndcg(False, "typed"),
        "lexical only": ndcg(True, "typed"),
        "both, dense rewritten": ndcg(True, "rewritten"),
        "both, dense + equivalents": ndcg(True, "appended"),
    }
    for weight in (0.5, 0.7, 1.0):
        figures[f"lexical only, added words weigh {weight}"] = ndcg(True, "typed", weight)
    rewritten = sum(synonyms.expand(q).rewritten for q in queries)
    print(f"{rewritten} of them rewritten by an explicit rule")
    base = figures["none"][0]
    rows = [[name, f"{value:.4f}", f"{value / base:.3f}", f"{seconds:.1f}"] for name, (value, seconds) in figures.items()]
    print(markdown_table(["synonyms", f"nDCG@{K}", "x none", "seconds"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "index": str(args.index), "queries": len(qids), "rules": len(synonyms.rules), "rewritten": rewritten,
        "ndcg@10": {name: value for name, (value, _) in figures.items()},
        "examples": [[q, synonyms.expand(q).text, synonyms.expand(q).extras] for q in queries[:20]],
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
