"""Metadata filters inside retrieval: FAISS (IDSelector) and BM25 against brute force, and filter columns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitrina.index import LexicalIndex, ProductIndex, ProductTable, VectorSpace
from vitrina.index.filters import FilterColumns, FilterError, FilterConfig, ProductFilter
from vitrina.index.store import EXACT_FILTER_MAX


def normalised(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, allowed: np.ndarray, k: int):
    keep = allowed[rows]
    sims = queries @ vectors[keep].T
    kept_rows = rows[keep]
    return [kept_rows[np.lexsort((kept_rows, -s))][:k] for s in sims]


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF16,Flat"])
@pytest.mark.parametrize("share", [0.5, 0.05, 0.004])  # through FAISS's IDSelector; exact below EXACT_FILTER_MAX
def test_filtered_search_returns_the_brute_force_top_k_of_the_allowed_rows(factory, share):
    rng = np.random.default_rng(7)
    n, dim, k = 6_000, 24, 10
    vectors = normalised(rng, n, dim)
    rows = rng.permutation(n + 500)[:n].astype(np.int64)  # product rows are not positions
    allowed = rng.random(n + 500) < share
    allowed[rows[:3]] = True  # at least three reachable
    space = VectorSpace(ProductIndex.build(vectors, rows, factory), vectors, rows)
    queries = normalised(rng, 20, dim)
    scores, found = space.search(queries, k, allowed)
    expected = brute_force(queries, vectors, rows, allowed, k)
    reachable = int(allowed[rows].sum())
    for i in range(len(queries)):
        got = found[i][found[i] >= 0]
        assert allowed[got].all(), "a row outside the filter came back"
        assert len(got) == min(k, reachable), "fewer than k hits although k matching products exist"
        if factory == "Flat" or reachable <= EXACT_FILTER_MAX:
            assert list(got) == list(expected[i])
        else:  # approximate: most of the exact top-k, never a disallowed row
            assert len(set(got) & set(expected[i])) >= 7
    if factory != "Flat":
        assert reachable > EXACT_FILTER_MAX or share < 0.5  # the 0.5 case does go through FAISS's selector


def test_filter_that_allows_nothing_returns_no_hits():
    rng = np.random.default_rng(1)
    vectors = normalised(rng, 50, 8)
    rows = np.arange(50, dtype=np.int64)
    space = VectorSpace(ProductIndex.build(vectors, rows, "Flat"), vectors, rows)
    _, found = space.search(vectors[:2], 5, np.zeros(50, dtype=bool))
    assert (found == -1).all()


def test_lexical_search_only_returns_allowed_rows_and_fills_k_from_them():
    texts = [f"red shoes model {i}" for i in range(30)] + [f"blue shoes model {i}" for i in range(30)]
    lexical = LexicalIndex.build(texts)
    allowed = np.zeros(60, dtype=bool)
    allowed[45:] = True  # 15 blue shoes only
    scores, rows = lexical.search(["red shoes"], 10, allowed)
    assert allowed[rows[0]].all() and len(rows[0]) == 10  # 'shoes' matches them all, 'red' none of them
    every = lexical.retriever.get_scores([lexical.retriever.vocab_dict[t] for t in lexical.analyzer.tokens("red shoes")])
    expected = sorted(range(45, 60), key=lambda r: (-every[r], r))[:10]
    assert list(rows[0]) == expected


def catalog_table() -> ProductTable:
    return ProductTable.from_records(
        ["a", "b", "c", "d", "e"],
        [
            {"category": "Shoes", "brand": "Nike", "price": 50.0},
            {"category": "shoes", "brand": "Adidas", "price": 120.0},
            {"category": "Watches", "brand": "Casio", "price": 30.0},
            {"category": "Watches", "brand": None, "price": None},
            {"category": None, "brand": "NIKE", "price": 80.0},
        ],
    )


def test_filter_columns_match_case_insensitively_and_exclude_unpriced_products_from_price_ranges():
    columns = FilterColumns(catalog_table())
    allowed = lambda **kw: [r for r in "abcde" if columns.mask(ProductFilter(**kw))["abcde".index(r)]]  # noqa: E731
    assert allowed(category=("SHOES",)) == ["a", "b"]
    assert allowed(brand=("nike",)) == ["a", "e"]
    assert allowed(category=("shoes", "watches")) == ["a", "b", "c", "d"]
    assert allowed(price_min=40.0, price_max=100.0) == ["a", "e"]
    assert allowed(price_max=1000.0) == ["a", "b", "c", "e"]  # d has no price
    assert allowed(brand=("nike",), price_max=60.0) == ["a"]
    assert columns.mask(ProductFilter()) is None
    assert columns.values("category") == ["Watches", "Shoes", "shoes"]


def test_filter_errors_name_the_problem():
    with pytest.raises(FilterError, match="price_min 10.0 is above price_max 5.0"):
        ProductFilter(price_min=10.0, price_max=5.0)
    with pytest.raises(FilterError, match="finite"):
        ProductFilter(price_min=math.nan)
    table = ProductTable.from_records(["a"], [{"title": "x"}])
    with pytest.raises(FilterError, match="no brand column"):
        FilterColumns(table).mask(ProductFilter(brand=("nike",)))
    with pytest.raises(FilterError, match="'maker' is not in this catalog"):
        FilterColumns(table, FilterConfig(brand="maker"))
