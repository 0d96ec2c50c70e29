"""Search quality on the shared datasets: Home Depot text search and fashion image lookups.

Home Depot: the titles of homedepot/products.csv in an exact (Flat) index with the default text
model; every query of qrels_dev.csv searched in one batch, mean nDCG@10 (linear gain = the mean
rater relevance 1-3, unjudged products 0), beside BM25 (bm25s) over the same titles.

Fashion: the images of fashion/products.csv in an exact (Flat) index with the default image
model; each product's stored image vector retrieves its top 10 (itself excluded). precision@10
of hits sharing the query's articleType, and its articleType and baseColour.

    .venv/bin/python benchmarks/quality.py [--limit N] [--image-queries N] [--reuse]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import bm25s

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, ensure_index, index_path, markdown_table, subset_catalog, timed
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.relevance import mean, ndcg_at_k, precision_at_k
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexConfig, ProductTable

HOMEDEPOT = DATA / "homedepot"
FASHION_CSV = DATA / "fashion" / "products.csv"
K = 10
BM25_SETTINGS = {"method": "lucene", "k1": 1.5, "b": 0.75}  # bm25s defaults, named for the report
BM25_STOPWORDS = "en"


@dataclass
class Query:
    text: str
    relevance: dict[str, float] = field(default_factory=dict)  # product id -> graded relevance


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="index only the first N products of each catalog (quick runs)")
    parser.add_argument("--image-queries", type=int, help="sample N fashion products as queries (default: all)")
    parser.add_argument("--only", choices=("homedepot", "fashion"), help="run one of the two benchmarks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the indexes (default %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="reuse an index already built in --out")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling --image-queries")
    return parser.parse_args(argv)


def read_qrels(path: Path, product_ids: set[str]) -> dict[str, Query]:
    """Queries by id with their judgements, keeping only products in the index (all, without --limit)."""
    queries: dict[str, Query] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            query = queries.setdefault(row["query_id"], Query(row["query"]))
            if row["product_id"] in product_ids:
                query.relevance[row["product_id"]] = float(row["relevance"])
    return {qid: q for qid, q in queries.items() if q.relevance}


def bm25_rankings(ids: Sequence[str], titles: Sequence[str], queries: Sequence[str], k: int) -> list[list[str]]:
    """Top-k product ids per query by BM25; products scoring 0 (no query word in common) are dropped."""
    retriever = bm25s.BM25(**BM25_SETTINGS)
    retriever.index(bm25s.tokenize(list(titles), stopwords=BM25_STOPWORDS, show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(queries), stopwords=BM25_STOPWORDS, return_ids=False, show_progress=False)
    docs, scores = retriever.retrieve(query_tokens, k=k, show_progress=False)
    return [[ids[d] for d, s in zip(row_docs, row_scores) if s > 0] for row_docs, row_scores in zip(docs, scores)]


def dense_rankings(session: SearchSession, queries: Sequence[str], k: int) -> list[list[str]]:
    return [[hit.id for hit in hits] for hits in session.search(queries, k=k, mode="dense")]


def homedepot(args: argparse.Namespace) -> str:
    config = VitrinaConfig(
        image_model=None,
        catalog=CatalogConfig(id_field="product_id", text_fields=("title",), image_field=None),
        index=IndexConfig(factory="Flat"),
        progress=sys.stderr.isatty(),
    )
    target = index_path(args.out, "quality-homedepot-text", args.limit)
    ensure_index(subset_catalog(HOMEDEPOT / "products.csv", args.limit, args.out), target, config, args.reuse)
    session = SearchSession(target, config)
    session.encoder("text")  # loaded before the clock starts
    ids = session.products.ids
    titles = [session.products.metadata(row)["title"] for row in range(len(ids))]
    queries = list(read_qrels(HOMEDEPOT / "qrels_dev.csv", set(ids)).values())
    texts = [q.text for q in queries]

    rows = []
    for method, settings, rank in (
        ("dense", f"{session.manifest.space('text').encoder}, Flat", lambda: dense_rankings(session, texts, K)),
        (
            "BM25 (bm25s)",
            f"{BM25_SETTINGS}, bm25s tokenizer, English stopwords, no stemming",
            lambda: bm25_rankings(ids, titles, texts, K),
        ),
    ):
        rankings, seconds = timed(rank)
        score = mean(ndcg_at_k(ranked, q.relevance, K) for ranked, q in zip(rankings, queries))
        rows.append([method, settings, len(queries), f"{score:.4f}", f"{seconds:.1f}"])
    title = f"Home Depot text search: {len(ids):,} products, {len(queries):,} queries"
    headers = ["method", "settings", "queries", "mean nDCG@10", "seconds"]
    note = "seconds: dense, encoding and searching all queries; BM25, indexing the titles and all queries"
    return f"{title}\n\n{markdown_table(headers, rows)}\n\n{note}"


def shares_attributes(products: ProductTable, row: int, keys: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a product id has the same values of `keys` as product `row`; a missing value never matches."""

    def values(of_row: int) -> tuple | None:
        found = tuple(products.metadata(of_row)[key] for key in keys)
        return None if None in found else found

    wanted = values(row)
    return lambda pid: wanted is not None and values(products.row_of(pid)) == wanted


def fashion(args: argparse.Namespace) -> str:
    config = VitrinaConfig(index=IndexConfig(factory="Flat"), progress=sys.stderr.isatty(), images=DATA_IMAGES)
    target = index_path(args.out, "quality-fashion-image", args.limit)
    ensure_index(subset_catalog(FASHION_CSV, args.limit, args.out, image_field="image"), target, config, args.reuse)
    session = SearchSession(target, config)
    products = session.products
    query_rows = session.directory.spaces["image"].rows.tolist()
    if args.image_queries is not None and args.image_queries < len(query_rows):
        query_rows = sorted(random.Random(args.seed).sample(query_rows, args.image_queries))

    measures = {
        "same articleType": ("articleType",),
        "same articleType + baseColour": ("articleType", "baseColour"),
    }
    scores: dict[str, list[float]] = {name: [] for name in measures}

    def score_all() -> None:
        for row in query_rows:
            ranked = [hit.id for hit in session.similar_to_product(products.ids[row], k=K)]
            for name, keys in measures.items():
                scores[name].append(precision_at_k(ranked, shares_attributes(products, row, keys), K))

    _, seconds = timed(score_all)
    encoder = session.manifest.space("image").encoder
    rows = [[name, encoder, len(query_rows), f"{mean(values):.4f}"] for name, values in scores.items()]
    title = (
        f"Fashion image lookups: {len(products):,} products, {len(query_rows):,} queries "
        f"(own image vector, itself excluded; {seconds:.1f} s for all lookups)"
    )
    return f"{title}\n\n{markdown_table(['relevant when', 'image model', 'queries', 'precision@10'], rows)}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    runs = {"homedepot": homedepot, "fashion": fashion}
    tables = [run(args) for name, run in runs.items() if args.only in (None, name)]
    print()
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
