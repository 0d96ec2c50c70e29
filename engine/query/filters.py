"""`where` and `price` filters: the text syntax shared by the CLI and HTTP, and Python values made a ProductFilter.

A `where` mapping names catalog columns: `{"articleType": "Dresses"}` keeps products equal to a value
(text case-insensitively), `{"baseColour": ["Black", "Blue"]}` any of several, `{"year": (2010, 2015)}`
an inclusive range (either end None: open). `price=(10, 50)` is a range on the catalog's price column.
As text (`parse_where`): `FIELD=VALUE`, the same FIELD repeated for any of, `FIELD>=X` and `FIELD<=Y`
for the ends of a range; a price range is `LOW:HIGH` (`parse_price`: `10:50`, `10:`, `:50`).
"""

from __future__ import annotations

import math
import re
from numbers import Real
from typing import Any, Mapping, Sequence

from vitrina.engine.errors import QueryError
from vitrina.index.filters import ColumnCondition, FilterError, ProductFilter

MAX_CONDITIONS = 20  # columns one `where` may name
MAX_VALUES = 100  # values one column may be any of
MAX_VALUE_CHARS = 256  # length of a column name or a text value
MAX_WHERE_ITEMS = MAX_VALUES  # FIELD=VALUE items in one request
_ITEM = re.compile(r"(?P<field>[^=<>]*?)\s*(?P<op>>=|<=|=)\s*(?P<value>.*)", re.DOTALL)
_COLON_ITEM = re.compile(r"(?P<field>[^=<>:]*?)\s*(?P<op>:)\s*(?P<value>.*)", re.DOTALL)  # FIELD:VALUE, as FIELD=VALUE

PriceRange = tuple[float | None, float | None]


def parse_where(items: Sequence[str]) -> dict[str, Any]:
    """`where` conditions from text items: FIELD=VALUE or FIELD:VALUE (repeated: any of), FIELD>=X, FIELD<=Y.

    The first of `:`, `=`, `>=`, `<=` in the item separates the field from the value, so a value may hold the others."""
    if len(items) > MAX_WHERE_ITEMS:
        raise QueryError(f"{len(items)} filter conditions; give at most {MAX_WHERE_ITEMS}")
    values: dict[str, list[str]] = {}
    ranges: dict[str, list[float | None]] = {}
    for item in items:
        text = str(item)
        if len(text) > 2 * MAX_VALUE_CHARS:
            raise QueryError(f"filter condition {text[:40]!r}... is {len(text)} characters long; "
                             f"give at most {2 * MAX_VALUE_CHARS}")
        match = _COLON_ITEM.fullmatch(text.strip()) or _ITEM.fullmatch(text.strip())
        if match is None or not match["field"].strip():
            raise QueryError(f"filter condition {text!r} is not FIELD=VALUE (or FIELD:VALUE), FIELD>=NUMBER or FIELD<=NUMBER")
        field, op, value = match["field"].strip(), match["op"], match["value"].strip()
        if not value:
            raise QueryError(f"filter condition {text!r} has no value after {op!r}")
        op = "=" if op == ":" else op
        if (op == "=" and field in ranges) or (op != "=" and field in values):
            raise QueryError(f"filter condition {text!r}: {field!r} takes values (=) or a range (>=, <=), not both")
        if op == "=":
            values.setdefault(field, []).append(value)
            continue
        ends = ranges.setdefault(field, [None, None])
        end = 0 if op == ">=" else 1
        if ends[end] is not None:
            raise QueryError(f"filter condition {text!r} gives a second {'lower' if end == 0 else 'upper'} end for {field!r}")
        ends[end] = _number(value, f"filter condition {text!r}")
    where: dict[str, Any] = {field: found[0] if len(found) == 1 else found for field, found in values.items()}
    where.update({field: (low, high) for field, (low, high) in ranges.items()})
    return where


def parse_price(text: str) -> PriceRange:
    """A price range from LOW:HIGH text, either end left out for an open one (10:50, 10:, :50)."""
    low, colon, high = str(text).strip().partition(":")
    if not colon or not (low.strip() or high.strip()):
        raise QueryError(f"price range {text!r} is not LOW:HIGH (either end may be left out, as in 10: or :50)")
    what = f"price range {text!r}"
    return (_number(low, what) if low.strip() else None, _number(high, what) if high.strip() else None)


def product_filter(where: Mapping[str, Any] | None = None, price: PriceRange | None = None,
                   base: ProductFilter | None = None) -> ProductFilter | None:
    """One ProductFilter of `where` conditions, a `price` range and a `base` filter (all must hold), or None for none."""
    conditions = _conditions(where) if where else ()
    low, high = _price(price) if price is not None else (None, None)
    base = base or ProductFilter()
    try:
        combined = ProductFilter(
            base.category, base.brand, _tighter(base.price_min, low, max), _tighter(base.price_max, high, min),
            base.where + conditions,
        )
    except FilterError as exc:
        raise QueryError(str(exc)) from None
    return None if combined.is_empty else combined


def _conditions(where: Mapping[str, Any]) -> tuple[ColumnCondition, ...]:
    if not isinstance(where, Mapping):
        raise QueryError(f"where must map column names to values, got {type(where).__name__}")
    if len(where) > MAX_CONDITIONS:
        raise QueryError(f"where names {len(where)} columns; give at most {MAX_CONDITIONS}")
    conditions = []
    for column, wanted in where.items():
        if not isinstance(column, str) or not column or len(column) > MAX_VALUE_CHARS:
            raise QueryError(f"where: {str(column)[:40]!r} is not a column name (text of 1 to {MAX_VALUE_CHARS} characters)")
        try:
            conditions.append(_condition(column, wanted))
        except FilterError as exc:
            raise QueryError(str(exc)) from None
    return tuple(conditions)


def _condition(column: str, wanted: Any) -> ColumnCondition:
    """A value, a list (or set) of values, or a (low, high) tuple: a range."""
    if isinstance(wanted, tuple):
        if len(wanted) != 2:
            raise QueryError(f"where {column!r}: a range is a (low, high) pair, got {len(wanted)} items; "
                             "give several values as a list")
        low, high = (None if end is None else _number(end, f"where {column!r}: the range") for end in wanted)
        if low is None and high is None:
            raise QueryError(f"where {column!r}: the range (None, None) has no end; give at least one")
        return ColumnCondition(column, low=low, high=high)
    values = list(wanted) if isinstance(wanted, (list, set, frozenset)) else [wanted]
    if not values or len(values) > MAX_VALUES:
        raise QueryError(f"where {column!r}: give 1 to {MAX_VALUES} values, got {len(values)}")
    for value in values:
        _check_value(column, value)
    return ColumnCondition(column, tuple(values))


def _check_value(column: str, value: Any) -> None:
    if isinstance(value, str):
        if not value or len(value) > MAX_VALUE_CHARS:
            raise QueryError(f"where {column!r}: a value must be text of 1 to {MAX_VALUE_CHARS} characters, "
                             f"got {len(value)}")
    elif not isinstance(value, Real) or not math.isfinite(value):
        raise QueryError(f"where {column!r}: {_shown(value)} is not a value to compare (text, a finite number or a bool)")


def _price(price: Any) -> PriceRange:
    if not isinstance(price, (tuple, list)) or len(price) != 2:
        raise QueryError(f"price must be a (low, high) pair, either end None, got {_shown(price)}")
    low, high = (None if end is None else _number(end, "price") for end in price)
    if low is not None and high is not None and low > high:
        raise QueryError(f"price range ({low:g}, {high:g}) starts above its end")
    return low, high


def _tighter(first: float | None, second: float | None, pick) -> float | None:
    """The tighter of two range ends, where both are given."""
    return second if first is None else first if second is None else pick(first, second)


def _number(value: Any, what: str) -> float:
    """A finite number from a number or its text; QueryError naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (Real, str)):
        raise QueryError(f"{what}: {_shown(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise QueryError(f"{what}: {_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise QueryError(f"{what}: {_shown(value)} is not a finite number")
    return number


def _shown(value: Any) -> str:
    """A value as the message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
