"""Metadata filters inside retrieval: FAISS (IDSelector) and BM25 against brute force, filter columns, and the
`where` / `price` conditions with their text syntax."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitrina.index import LexicalIndex, ProductIndex, ProductTable, VectorSpace
from vitrina.engine.errors import QueryError
from vitrina.engine.query.filters import parse_price, parse_where, product_filter
from vitrina.index.filters import ColumnCondition, FilterColumns, FilterError, FilterConfig, ProductFilter
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


def typed_table() -> ProductTable:
    """Text, numbers as text (a CSV's year), typed numbers and bools."""
    return ProductTable.from_records(
        ["a", "b", "c", "d"],
        [
            {"colour": "Black", "year": "2010", "stock": 3, "sale": True},
            {"colour": "blue", "year": "2012", "stock": 0, "sale": False},
            {"colour": "Red", "year": "2015", "stock": 7, "sale": True},
            {"colour": None, "year": None, "stock": None, "sale": None},
        ],
    )


def test_where_conditions_match_values_any_of_and_ranges_on_any_column():
    columns = FilterColumns(typed_table())
    kept = lambda *conditions: [r for r in "abcd" if columns.mask(ProductFilter(where=conditions))["abcd".index(r)]]  # noqa: E731
    assert kept(ColumnCondition("colour", ("BLACK",))) == ["a"]
    assert kept(ColumnCondition("colour", ("black", "Blue"))) == ["a", "b"]
    assert kept(ColumnCondition("year", low=2011.0)) == ["b", "c"]  # numbers kept as text still take ranges
    assert kept(ColumnCondition("year", low=2010.0, high=2012.0)) == ["a", "b"]
    assert kept(ColumnCondition("year", ("2012",))) == ["b"]
    assert kept(ColumnCondition("stock", ("7",))) == ["c"] == kept(ColumnCondition("stock", (7.0,)))
    assert kept(ColumnCondition("stock", high=3.0)) == ["a", "b"]  # no value: never in a range
    assert kept(ColumnCondition("sale", (True,))) == ["a", "c"] == kept(ColumnCondition("sale", ("true",)))
    assert kept(ColumnCondition("colour", ("black", "blue")), ColumnCondition("year", high=2010.0)) == ["a"]
    assert columns.is_numeric("year") and columns.is_numeric("stock") and not columns.is_numeric("colour")


def test_where_condition_errors_name_the_column_and_the_problem():
    columns = FilterColumns(typed_table())
    with pytest.raises(FilterError, match=r"no column 'size' to filter on \(columns: colour, year, stock, sale\)"):
        columns.mask(ProductFilter(where=(ColumnCondition("size", ("M",)),)))
    with pytest.raises(FilterError, match="'colour' does not hold numbers"):
        columns.mask(ProductFilter(where=(ColumnCondition("colour", low=1.0),)))
    with pytest.raises(FilterError, match="'stock' holds numbers, and 'many' is not one"):
        columns.mask(ProductFilter(where=(ColumnCondition("stock", ("many",)),)))
    with pytest.raises(FilterError, match="starts above its end"):
        ColumnCondition("year", low=2015.0, high=2010.0)
    with pytest.raises(FilterError, match="either values or a range"):
        ColumnCondition("year")


def test_parse_where_reads_values_any_of_and_range_ends():
    assert parse_where(["articleType=Dresses", "baseColour=Black", "baseColour = Blue", "year>=2010", "year<=2015"]) == {
        "articleType": "Dresses", "baseColour": ["Black", "Blue"], "year": (2010.0, 2015.0)}
    assert parse_where(["price<=50"]) == {"price": (None, 50.0)}
    assert parse_where(["title=a=b"]) == {"title": "a=b"}
    assert parse_where([]) == {}


@pytest.mark.parametrize("item, problem", [
    ("articleType", r"'articleType' is not FIELD=VALUE \(or FIELD:VALUE\), FIELD>=NUMBER or FIELD<=NUMBER"),
    ("=Dresses", "is not FIELD=VALUE"),
    ("price>10", "is not FIELD=VALUE"),
    ("colour=", r"'colour=' has no value after '='"),
    ("year>=old", r"'year>=old': 'old' is not a number"),
    ("year>=1e400", "is not a finite number"),
])
def test_parse_where_errors_name_the_item(item, problem):
    with pytest.raises(QueryError, match=problem):
        parse_where([item])


def test_parse_where_refuses_mixed_repeated_and_too_many_items():
    with pytest.raises(QueryError, match="takes values .* or a range"):
        parse_where(["year=2012", "year>=2010"])
    with pytest.raises(QueryError, match="second lower end"):
        parse_where(["year>=2010", "year>=2011"])
    with pytest.raises(QueryError, match="1000 filter conditions; give at most"):
        parse_where([f"c{i}=v" for i in range(1000)])
    with pytest.raises(QueryError, match="characters long"):
        parse_where(["title=" + "x" * 100_000])


def test_parse_price_reads_open_and_closed_ranges():
    assert parse_price("10:50") == (10.0, 50.0)
    assert parse_price("10:") == (10.0, None)
    assert parse_price(" :50.5") == (None, 50.5)
    for bad, problem in [("10", "not LOW:HIGH"), (":", "not LOW:HIGH"), ("ten:20", "'ten' is not a number"),
                         ("nan:1", "not a finite number")]:
        with pytest.raises(QueryError, match=problem):
            parse_price(bad)


def test_product_filter_turns_python_values_into_conditions_and_bounds_them():
    made = product_filter({"colour": "Black", "size": ["S", "M"], "year": (2010, None)}, price=(None, 50))
    assert made.where == (ColumnCondition("colour", ("Black",)), ColumnCondition("size", ("S", "M")),
                          ColumnCondition("year", low=2010.0))
    assert (made.price_min, made.price_max) == (None, 50.0)
    assert product_filter(None, None) is None and product_filter({}, None) is None
    tighter = product_filter(None, (20, 80), ProductFilter(category=("shoes",), price_min=10.0, price_max=60.0))
    assert (tighter.category, tighter.price_min, tighter.price_max) == (("shoes",), 20.0, 60.0)
    for where, price, problem in [
        ({f"c{i}": "v" for i in range(1000)}, None, "names 1000 columns; give at most"),
        ({"colour": ["v"] * 1000}, None, "give 1 to 100 values, got 1000"),
        ({"colour": []}, None, "give 1 to 100 values, got 0"),
        ({"colour": "x" * 10_000}, None, "text of 1 to 256 characters, got 10000"),
        ({"colour": None}, None, "None is not a value to compare"),
        ({"colour": {"a": 1}}, None, "is not a value to compare"),
        ({"year": (1, 2, 3)}, None, "a range is a .low, high. pair, got 3 items"),
        ({"year": (None, None)}, None, "has no end"),
        ({"year": ("old", 5)}, None, "'old' is not a number"),
        ({"year": (float("nan"), 5)}, None, "not a finite number"),
        ({5: "x"}, None, "is not a column name"),
        (None, ("cheap", 10), "price: 'cheap' is not a number"),
        (None, (50, 10), r"price range \(50, 10\) starts above its end"),
        (None, 10, "price must be a .low, high. pair"),
    ]:
        with pytest.raises(QueryError, match=problem):
            product_filter(where, price)
