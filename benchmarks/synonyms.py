"""Synonyms on Home Depot: what the dense leg should read, measured on the dev queries a shop's synonyms touch.

A small synonyms file a hardware shop could write (SHOP_SYNONYMS below: shoppers' words for catalog words,
abbreviations, one-word spellings) is applied to every Home Depot dev query; the queries at least one rule
matches are searched (hybrid, k=10) four ways:

  none                    no synonyms (the search before)
  lexical only            the BM25 leg expanded (rewritten query, equivalents at SYNONYM_WEIGHT), the dense
                          leg reading the query as typed
  both, dense rewritten   BM25 expanded; the dense leg reads the rewritten query (`Expansion.text`)
  both, dense + equiv.    BM25 expanded; the dense leg reads the rewritten query with the equivalents
                          appended (`Expansion.dense_text`, what search does)

    .venv/bin/python benchmarks/synonyms.py --index benchmarks/out/hd-hybrid
"""

from __future__ import annotations

import argparse
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

    def ndcg(expanded_lexical: bool, dense: str) -> tuple[float, float]:
        lexical.synonyms = synonyms if expanded_lexical else None
        started = time.perf_counter()
        texts = []
        for query in queries:
            base = session.corrected_query(query, "hybrid") or query
            expansion = synonyms.expand(base)
            texts.append(base if dense == "typed" or expansion is None
                         else expansion.text if dense == "rewritten" else expansion.dense_text)
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
    base = figures["none"][0]
    rows = [[name, f"{value:.4f}", f"{value / base:.3f}", f"{seconds:.1f}"] for name, (value, seconds) in figures.items()]
    print(markdown_table(["synonyms", f"nDCG@{K}", "x none", "seconds"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "index": str(args.index), "queries": len(qids), "rules": len(synonyms.rules),
        "ndcg@10": {name: value for name, (value, _) in figures.items()},
        "examples": [[q, synonyms.expand(q).dense_text] for q in queries[:20]],
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
