"""Metadata filters turned into the set of product rows a search may return: category, brand and price
(read from the catalog's usual columns), and conditions on any catalog column (`ColumnCondition`).

A filter becomes a boolean mask over product rows; `VectorSpace.search` hands it to FAISS as an
IDSelector and `LexicalIndex.search` zeroes the other rows' BM25 scores, so a filtered query gets k
hits whenever k matching products exist (no trimming of an unfiltered top-k).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from vitrina.index.errors import IndexStoreError
from vitrina.index.products import ID_COLUMN, ProductTable

CATEGORY_COLUMNS = ("category", "articleType", "product_type_name", "subCategory", "masterCategory")
BRAND_COLUMNS = ("brand", "brand_name", "manufacturer")
PRICE_COLUMNS = ("price",)


class FilterError(IndexStoreError):
    """A filter the catalog cannot answer (no such column) or that makes no sense (min above max)."""


@dataclass(frozen=True)
class FilterConfig:
    """Which product columns the category, brand and price filters read; None picks the first of the
    usual names present in the catalog (category: category, articleType, product_type_name, ...)."""

    category: str | None = None
    brand: str | None = None
    price: str | None = None


@dataclass(frozen=True)
class ColumnCondition:
    """Products whose `column` is any of `values` (text case-insensitively, numbers by value), or lies
    within [low, high] (either end None: open)."""

    column: str
    values: tuple[str | float, ...] = ()
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        is_range = self.low is not None or self.high is not None
        if bool(self.values) == is_range:
            raise FilterError(f"a condition on {self.column!r} needs either values or a range, not {'both' if is_range else 'neither'}")
        for end in (self.low, self.high):
            if end is not None and not math.isfinite(end):
                raise FilterError(f"the range of {self.column!r} must have finite ends, got {end}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise FilterError(f"the range of {self.column!r} starts above its end ({self.low} > {self.high})")

    @property
    def is_range(self) -> bool:
        return not self.values


@dataclass(frozen=True)
class ProductFilter:
    """Products in any of `category` and any of `brand` (case-insensitive), priced within [min, max], that
    meet every condition of `where`."""

    category: tuple[str, ...] = ()
    brand: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    where: tuple[ColumnCondition, ...] = ()

    def __post_init__(self) -> None:
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise FilterError(f"{name} must be a finite number, got {value}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise FilterError(f"price_min {self.price_min} is above price_max {self.price_max}")

    @property
    def is_empty(self) -> bool:
        return not (self.category or self.brand or self.where) and self.price_min is None and self.price_max is None


class FilterColumns:
    """The filterable columns of one product table, read once; `mask` answers a `ProductFilter`."""

    def __init__(self, products: ProductTable, fields: FilterConfig = FilterConfig()) -> None:
        self.products = products
        names = products.table.column_names
        self.available = tuple(n for n in names if n != ID_COLUMN)  # the columns `where` conditions may name
        self._by_column: dict[tuple[str, str], Any] = {}  # ("text" | "numbers" | "codes", column) -> values
        self.columns = {
            "category": _pick(fields.category, CATEGORY_COLUMNS, names),
            "brand": _pick(fields.brand, BRAND_COLUMNS, names),
            "price": _pick(fields.price, PRICE_COLUMNS, names),
        }

    def _column(self, role: str) -> str:
        name = self.columns[role]
        if name is None:
            raise FilterError(f"this catalog has no {role} column to filter on (looked for: "
                              f"{', '.join({'category': CATEGORY_COLUMNS, 'brand': BRAND_COLUMNS, 'price': PRICE_COLUMNS}[role])})")
        return name

    @cached_property
    def _folded(self) -> dict[str, np.ndarray]:
        out = {}
        for role in ("category", "brand"):
            if self.columns[role] is not None:
                values = self.products.table.column(self.columns[role]).to_pylist()
                out[role] = np.array(["" if v is None else str(v).casefold() for v in values], dtype=object)
        return out

    @cached_property
    def _prices(self) -> np.ndarray:
        values = self.products.table.column(self._column("price")).to_pylist()
        return np.array([_as_float(v) for v in values], dtype=np.float64)

    def mask(self, query: ProductFilter) -> np.ndarray | None:
        """Allowed product rows as a boolean mask, or None when the filter allows everything."""
        if query.is_empty:
            return None
        allowed = np.ones(len(self.products), dtype=bool)
        for role, wanted in (("category", query.category), ("brand", query.brand)):
            if wanted:
                column = self._column(role)
                for value in wanted:  # a misspelt category or brand is an error naming it, as in `where`
                    self._check_known(column, value)
                allowed &= np.isin(self._folded[role], [w.casefold() for w in wanted])
        if query.price_min is not None or query.price_max is not None:
            allowed &= _within(self._prices, query.price_min, query.price_max)
        for condition in query.where:
            allowed &= self._meets(condition)
        return allowed

    def check_column(self, column: str) -> str:
        """The column, when the catalog has it; else a FilterError listing the ones it has."""
        if column not in self.available:
            raise FilterError(f"this catalog has no column {column!r} to filter on (columns: {', '.join(self.available)})")
        return column

    def is_numeric(self, column: str) -> bool:
        """Whether a column holds numbers (a numeric type, or text whose every value reads as one): ranges need it."""
        return self._numbers(self.check_column(column)) is not None

    def _meets(self, condition: ColumnCondition) -> np.ndarray:
        """Rows meeting one condition: a range, numbers equal by value, or text equal case-insensitively."""
        column = self.check_column(condition.column)
        numbers = self._numbers(column)
        if condition.is_range:
            if numbers is None:
                raise FilterError(f"column {column!r} does not hold numbers, so it takes values, not a range")
            return _within(numbers, condition.low, condition.high)
        typed = self._typed_numbers(column)
        texts, wanted = [], []
        for value in condition.values:
            if isinstance(value, bool) or numbers is None or (isinstance(value, str) and not typed):
                texts.append(str(value).casefold())  # a number asked of a text column: compared as its text
                self._check_known(column, value)
            elif math.isnan(number := _as_float(value)):
                raise FilterError(f"column {column!r} holds numbers, and {value!r} is not one")
            else:
                wanted.append(number)
        allowed = np.zeros(len(self.products), dtype=bool)
        if texts:
            allowed |= np.isin(self._text(column), texts)
        if wanted:
            allowed |= np.isin(numbers, wanted)
        return allowed

    def _check_known(self, column: str, value: object) -> None:
        """Nothing when some product's `column` equals `value` as text (case-insensitively); else a FilterError
        naming the value, with the catalog's closest values (a misspelt value must not quietly match nothing)."""
        key = ("known", column)
        if key not in self._by_column:
            self._by_column[key] = frozenset(self._text(column).tolist()) - {""}
        known = self._by_column[key]
        if str(value).casefold() in known:
            return
        distinct = self._codes(column)[0]
        close = difflib.get_close_matches(str(value), [str(v) for v in distinct[:5000] if v != ""], n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise FilterError(f"no product has {column} {str(value)[:80]!r}{hint}")

    def _typed_numbers(self, column: str) -> bool:
        kind = self.products.table.schema.field(column).type
        return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)

    def _text(self, column: str) -> np.ndarray:
        """A column's values as case-folded text ('' for none), read once."""
        key = ("text", column)
        if key not in self._by_column:
            values = self.products.table.column(column).to_pylist()
            self._by_column[key] = np.array(["" if v is None else str(v).casefold() for v in values], dtype=object)
        return self._by_column[key]

    def _numbers(self, column: str) -> np.ndarray | None:
        """A column's values as numbers (NaN for none), or None when some value is not a number; read once."""
        key = ("numbers", column)
        if key not in self._by_column:
            values = self.products.table.column(column).to_pylist()
            numbers = np.array([_as_float(v) for v in values], dtype=np.float64)
            given = np.array([v is not None and v != "" and not isinstance(v, bool) for v in values], dtype=bool)
            numeric = given.any() and not np.isnan(numbers[given]).any()
            self._by_column[key] = numbers if numeric or self._typed_numbers(column) else None
        return self._by_column[key]

    def _codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A column's distinct values as text (sorted; '' for none) and each row's code into them, read once."""
        key = ("codes", column)
        if key not in self._by_column:
            values = self.products.table.column(column).to_pylist()
            labels = np.array(["" if v is None else str(v) for v in values], dtype=object)
            distinct, codes = np.unique(labels, return_inverse=True) if len(labels) else (labels, np.zeros(0, np.int64))
            self._by_column[key] = (distinct, codes.astype(np.int64).ravel())
        return self._by_column[key]

    def facet_counts(self, column: str, rows: np.ndarray, limit: int = 100) -> dict[str, int]:
        """How many of `rows` hold each value of `column` (its text; rows without a value left out), most
        frequent first (ties by value), at most `limit` values; a FilterError names a column the catalog lacks."""
        distinct, codes = self._codes(self.check_column(column))
        counts = np.bincount(codes[np.asarray(rows, dtype=np.int64)], minlength=len(distinct))
        present = np.flatnonzero((counts > 0) & (distinct != ""))
        order = present[np.lexsort((distinct[present], -counts[present]))][:limit]
        return {str(distinct[i]): int(counts[i]) for i in order}

    def prices_of(self, rows: np.ndarray) -> np.ndarray:
        """The prices of `rows` (NaN where unknown); a FilterError when the catalog has no price column."""
        return self._prices[np.asarray(rows, dtype=np.int64)]

    def price_range_of(self, rows: np.ndarray) -> tuple[float, float] | None:
        """The lowest and highest known price among `rows`; None when none has one or there is no price column."""
        if self.columns["price"] is None:
            return None
        prices = self.prices_of(rows)
        known = prices[np.isfinite(prices)]
        return (float(known.min()), float(known.max())) if len(known) else None

    def price_range(self) -> tuple[float, float] | None:
        """The lowest and highest known price, or None when no product has one (or there is no price column)."""
        if self.columns["price"] is None:
            return None
        known = self._prices[np.isfinite(self._prices)]
        return (float(known.min()), float(known.max())) if len(known) else None

    def values(self, role: str, limit: int = 500) -> list[str]:
        """The distinct values of a category or brand column, most frequent first (for filter menus)."""
        if self.columns.get(role) is None or role == "price":
            return []
        values = self.products.table.column(self.columns[role]).to_pylist()
        counts: dict[str, int] = {}
        for v in values:
            if v not in (None, ""):
                counts[str(v)] = counts.get(str(v), 0) + 1
        return sorted(counts, key=lambda v: (-counts[v], v))[:limit]


def _within(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Which values lie in [low, high] (None: open); NaN (no value) fails both comparisons: excluded."""
    inside = np.ones(len(values), dtype=bool)
    if low is not None:
        inside &= values >= low
    if high is not None:
        inside &= values <= high
    return inside


def _pick(chosen: str | None, candidates: tuple[str, ...], names: list[str]) -> str | None:
    if chosen is not None:
        if chosen not in names:
            raise FilterError(f"filter column {chosen!r} is not in this catalog (columns: {', '.join(names)})")
        return chosen
    return next((c for c in candidates if c in names), None)


def _as_float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
