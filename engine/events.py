"""Shopper events (views, clicks, add-to-carts, purchases) read from CSV or Parquet into weighted interactions.

A bad row never stops the batch and is never dropped silently: it is counted by reason
(unknown product, unknown event, bad timestamp, ...) with its line number, and the rest is used.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import CatalogError

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class EventWeights:
    """How much one event of each kind says about a shopper's interest (purchase highest)."""

    view: float = 1.0
    click: float = 2.0
    cart: float = 4.0
    purchase: float = 8.0

    def of(self, event: str) -> float | None:
        return {"view": self.view, "click": self.click, "cart": self.cart, "purchase": self.purchase}.get(event)


@dataclass(frozen=True)
class EventFields:
    """Column names of an events file. default_event: the kind of every row of a file with neither an
    event nor a weight column (e.g. a purchase log)."""

    user_field: str = "user_id"
    product_field: str = "product_id"
    event_field: str = "event"
    timestamp_field: str = "timestamp"
    weight_field: str = "weight"
    default_event: str | None = None


@dataclass
class EventProblems:
    """Rows that could not be used: a count per reason and the first few examples with line numbers."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no bad rows"
        kinds = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        return f"{self.total} bad rows skipped ({kinds}); first: {'; '.join(self.examples)}"


@dataclass
class EventLog:
    """Usable events as parallel arrays: who, which product row, how much it counts, when (UTC seconds)."""

    users: np.ndarray  # object array of user id strings
    product_rows: np.ndarray  # int64
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # float64 seconds since the epoch
    problems: EventProblems

    def __len__(self) -> int:
        return len(self.users)


def parse_timestamp(value: str) -> float | None:
    """UTC seconds of an ISO 8601 date or time (naive means UTC) or of epoch seconds; None if unreadable."""
    text = value.strip()
    if not text:
        return None
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _iso_seconds(text)
    except ValueError:
        return None


def _iso_seconds(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _read_table(path: Path) -> pa.Table:
    if not path.is_file():
        raise CatalogError(f"events file not found: {path}")
    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_table(path)
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        # every column as text, so ids such as 0493995001 keep their leading zeros
        options = pacsv.ConvertOptions(column_types={name: pa.string() for name in header})
        return pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CatalogError(f"{path} cannot be read as events: {exc}") from None


def read_events(
    path: str | Path,
    product_rows: Mapping[str, int],
    weights: EventWeights = EventWeights(),
    fields: EventFields = EventFields(),
) -> EventLog:
    """Read an events file; `product_rows` maps the index's product ids to their rows.

    Needs user, product and timestamp columns, plus an event column (view, click, cart, purchase),
    a weight column, or `fields.default_event`. Missing columns are an error; bad rows are counted.
    """
    path = Path(path)
    table = _read_table(path)
    first_line = 2 if path.suffix.lower() != ".parquet" else 1  # CSV: after the header; Parquet: row numbers
    unit = "line" if first_line == 2 else "row"
    return events_from_table(table, str(path), lambda i: f"{path.name}, {unit} {i + first_line}",
                             product_rows, weights, fields)


def events_from_records(records: Sequence[Mapping[str, object]], product_rows: Mapping[str, int],
                        weights: EventWeights = EventWeights(), fields: EventFields = EventFields(),
                        source: str = "events") -> EventLog:
    """Events given as records (one dict per event, e.g. a JSON request body); bad ones are counted
    with their position, as `events[3]`."""
    names: list[str] = []
    for record in records:
        names.extend(k for k in record if k not in names)
    table = pa.table({name: pa.array([None if r.get(name) is None else str(r.get(name)) for r in records],
                                     type=pa.string()) for name in names})
    return events_from_table(table, source, lambda i: f"{source}[{i}]", product_rows, weights, fields)


def events_from_table(table: pa.Table, source: str, where_of: Callable[[int], str], product_rows: Mapping[str, int],
                      weights: EventWeights = EventWeights(), fields: EventFields = EventFields()) -> EventLog:
    """The checks and conversion behind `read_events`; `where_of(i)` names row i in problem reports."""
    columns = set(table.column_names)
    required = [fields.user_field, fields.product_field, fields.timestamp_field]
    missing = [c for c in required if c not in columns]
    if missing:
        raise CatalogError(f"{source}: missing column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    has_weight, has_event = fields.weight_field in columns, fields.event_field in columns
    if not (has_weight or has_event or fields.default_event):
        raise CatalogError(f"{source}: needs an {fields.event_field!r} or a {fields.weight_field!r} column "
                           "(or a default event for every row)")
    if fields.default_event and weights.of(fields.default_event) is None:
        raise CatalogError(f"unknown default event {fields.default_event!r}; use view, click, cart or purchase")

    def column(name: str) -> list[str]:
        return ["" if v is None else str(v) for v in table.column(name).to_pylist()] if name in columns else []

    users, products, stamps = column(fields.user_field), column(fields.product_field), column(fields.timestamp_field)
    events, raw_weights = column(fields.event_field), column(fields.weight_field)
    problems = EventProblems()
    keep_users, keep_rows, keep_weights, keep_stamps = [], [], [], []
    for i in range(table.num_rows):
        where = where_of(i)
        user, product = users[i].strip(), products[i].strip()
        if not user:
            problems.add(f"empty {fields.user_field}", where)
            continue
        row = product_rows.get(product)
        if row is None:
            problems.add("unknown product", where)
            continue
        stamp = parse_timestamp(stamps[i])
        if stamp is None:
            problems.add("bad timestamp", where)
            continue
        if has_weight and raw_weights[i].strip():
            try:
                weight = float(raw_weights[i])
            except ValueError:
                weight = float("nan")
            if not np.isfinite(weight) or weight <= 0:
                problems.add("bad weight", where)
                continue
        else:
            kind = events[i].strip().lower() if has_event and events[i].strip() else fields.default_event
            weight = weights.of(kind or "")
            if weight is None:
                problems.add("unknown event", where)
                continue
        keep_users.append(user)
        keep_rows.append(row)
        keep_weights.append(weight)
        keep_stamps.append(stamp)
    return EventLog(
        np.asarray(keep_users, dtype=object), np.asarray(keep_rows, dtype=np.int64),
        np.asarray(keep_weights, dtype=np.float32), np.asarray(keep_stamps, dtype=np.float64), problems,
    )
