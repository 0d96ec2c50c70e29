"""Metadata filters (category, brand, price range) turned into the set of product rows a search may return.

A filter becomes a boolean mask over product rows; `VectorSpace.search` hands it to FAISS as an
IDSelector and `LexicalIndex.search` zeroes the other rows' BM25 scores, so a filtered query gets k
hits whenever k matching products exist (no trimming of an unfiltered top-k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vitrina.index.errors import IndexStoreError
from vitrina.index.products import ProductTable

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
class ProductFilter:
    """Products in any of `category` and any of `brand` (case-insensitive), priced within [min, max]."""

    category: tuple[str, ...] = ()
    brand: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise FilterError(f"{name} must be a finite number, got {value}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise FilterError(f"price_min {self.price_min} is above price_max {self.price_max}")

    @property
    def is_empty(self) -> bool:
        return not (self.category or self.brand) and self.price_min is None and self.price_max is None


class FilterColumns:
    """The filterable columns of one product table, read once; `mask` answers a `ProductFilter`."""

    def __init__(self, products: ProductTable, fields: FilterConfig = FilterConfig()) -> None:
        self.products = products
        names = products.table.column_names
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
                self._column(role)
                allowed &= np.isin(self._folded[role], [w.casefold() for w in wanted])
        if query.price_min is not None or query.price_max is not None:
            prices = self._prices  # NaN (no price) fails both comparisons: excluded
            if query.price_min is not None:
                allowed &= prices >= query.price_min
            if query.price_max is not None:
                allowed &= prices <= query.price_max
        return allowed

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
