"""Shopper events (views, clicks, add-to-carts, purchases) read from CSV or Parquet into weighted interactions.

A bad row never stops the batch and is never dropped silently: it is counted by reason
(unknown product, unknown event, bad timestamp, a time in the future, a return, ...) with its line
number, and the rest is used. Every usable event gets an identity (the file's `event_id`, else a
digest of user, product, event and time), so an event seen twice can be applied once.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vitrina.engine.errors import CatalogError, MissingColumnError  # noqa: F401 - MissingColumnError: here as before

MAX_EXAMPLES = 5
EARLIEST_EVENT = datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp()  # older times are data errors
FUTURE_SKEW_S = 86_400.0  # how far past the wall clock an event may be dated (clock and time-zone slack)
MAX_BASKET_CHARS = 256  # a longer basket id is cut (it is only compared, keyed before it is stored)
MAX_WEIGHT = 1e6  # a larger weight column value is a data error (and would swamp every other event)


@dataclass(frozen=True)
class EventWeightConfig:
    """How much one event of each kind says about a shopper's interest (purchase highest)."""

    view: float = 1.0
    click: float = 2.0
    cart: float = 4.0
    purchase: float = 8.0

    def of(self, event: str) -> float | None:
        return {"view": self.view, "click": self.click, "cart": self.cart, "purchase": self.purchase}.get(event)


@dataclass(frozen=True)
class EventFieldConfig:
    """Column names of an events file. default_event: the kind of every row of a file with neither an
    event nor a weight column (e.g. a purchase log)."""

    user_field: str = "user_id"
    product_field: str = "product_id"
    event_field: str = "event"
    timestamp_field: str = "timestamp"
    weight_field: str = "weight"
    default_event: str | None = None
    id_field: str = "event_id"  # optional: the event's own id (else a digest of user, product, event, time)
    quantity_field: str = "quantity"  # optional: rows with a quantity <= 0 (returns) are counted and skipped
    # optional: the basket (order, invoice) or session an event belongs to, for "frequently bought together";
    # a file without `basket_field` but with `session_field` uses that (see engine.learn.co_purchase)
    basket_field: str = "basket_id"
    session_field: str = "session_id"


@dataclass(frozen=True)
class EventTimeConfig:
    """The window of believable event times (epoch seconds): from `earliest` to the wall clock plus
    `future_skew_s` (`now`: the clock to compare with; None reads the wall clock when events are read)."""

    earliest: float = EARLIEST_EVENT
    future_skew_s: float = FUTURE_SKEW_S
    now: float | None = None

    def problem(self, stamp: float) -> str | None:
        """Why a time is refused (a bad-row reason), or None when it is believable."""
        if stamp < self.earliest:
            return "timestamp before 1990" if self.earliest == EARLIEST_EVENT else "timestamp too old"
        if stamp > (time.time() if self.now is None else self.now) + self.future_skew_s:
            return "timestamp in the future"
        return None


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
    """Usable events as parallel arrays: who, which product row, how much it counts, when (UTC seconds),
    each event's identity and its product id."""

    users: np.ndarray  # object array of user id strings
    product_rows: np.ndarray  # int64
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # float64 seconds since the epoch
    problems: EventProblems
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # str identity per event
    product_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # str, row-aligned
    baskets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # str basket id ("": none), row-aligned or empty

    def __len__(self) -> int:
        return len(self.users)


def event_identity(user: str, product: str, kind: str, stamp: float, basket: str = "") -> str:
    """The identity of an event without an id of its own: a digest of who, what, which event and when (and
    in which basket, when it names one)."""
    text = "\x1f".join((user, product, kind, repr(float(stamp)), *((basket,) if basket else ())))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


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


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_table(path: Path) -> pa.Table:
    """An events file as a table of text columns: CSV (optionally .gz, read by pyarrow) or Parquet."""
    if not path.is_file():
        raise CatalogError(f"events file not found: {path}")
    try:
        if _is_parquet(path):
            return pq.read_table(path)
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
        # every column as text, so ids such as 0493995001 keep their leading zeros
        options = pacsv.ConvertOptions(column_types={name: pa.string() for name in header})
        return pacsv.read_csv(path, convert_options=options)  # decompresses .gz itself
    except UnicodeDecodeError:
        raise CatalogError(f"{path} cannot be read as events: it is not UTF-8 text (CSV, optionally gzipped) "
                           "or Parquet") from None
    except (pa.ArrowInvalid, OSError, EOFError, csv.Error) as exc:
        raise CatalogError(f"{path} cannot be read as events: {exc}") from None


def read_events(
    path: str | Path,
    product_rows: Mapping[str, int],
    weights: EventWeightConfig = EventWeightConfig(),
    fields: EventFieldConfig = EventFieldConfig(),
    times: EventTimeConfig = EventTimeConfig(),
) -> EventLog:
    """Read an events file (CSV, CSV.gz or Parquet); `product_rows` maps the index's product ids to their rows.

    Needs user, product and timestamp columns, plus an event column (view, click, cart, purchase),
    a weight column, or `fields.default_event`. Missing columns are an error; bad rows are counted.
    """
    path = Path(path)
    table = _read_table(path)
    first_line = 1 if _is_parquet(path) else 2  # CSV: after the header; Parquet: row numbers
    unit = "line" if first_line == 2 else "row"
    return events_from_table(table, str(path), lambda i: f"{path.name}, {unit} {i + first_line}",
                             product_rows, weights, fields, times)


def events_from_records(records: Sequence[Mapping[str, object]], product_rows: Mapping[str, int],
                        weights: EventWeightConfig = EventWeightConfig(), fields: EventFieldConfig = EventFieldConfig(),
                        source: str = "events", times: EventTimeConfig = EventTimeConfig()) -> EventLog:
    """Events given as records (one dict per event, e.g. a JSON request body); bad ones are counted
    with their position, as `events[3]`."""
    names: list[str] = []
    for record in records:
        names.extend(k for k in record if k not in names)
    table = pa.table({name: pa.array([None if r.get(name) is None else str(r.get(name)) for r in records],
                                     type=pa.string()) for name in names})
    return events_from_table(table, source, lambda i: f"{source}[{i}]", product_rows, weights, fields, times)


def events_from_table(table: pa.Table, source: str, where_of: Callable[[int], str], product_rows: Mapping[str, int],
                      weights: EventWeightConfig = EventWeightConfig(), fields: EventFieldConfig = EventFieldConfig(),
                      times: EventTimeConfig = EventTimeConfig()) -> EventLog:
    """The checks and conversion behind `read_events`; `where_of(i)` names row i in problem reports."""
    columns = set(table.column_names)
    for setting in ("user_field", "product_field", "timestamp_field"):
        name = getattr(fields, setting)
        if name not in columns:
            raise MissingColumnError(
                f"{source}: missing column {name!r} (columns: {', '.join(table.column_names)})", setting)
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
    own_ids, quantities = column(fields.id_field), column(fields.quantity_field)
    baskets = column(fields.basket_field if fields.basket_field in columns else fields.session_field)
    problems = EventProblems()
    keep_users, keep_rows, keep_weights, keep_stamps, keep_ids, keep_products = [], [], [], [], [], []
    keep_baskets: list[str] = []
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
        if stamp is None or not np.isfinite(stamp):
            problems.add("bad timestamp", where)
            continue
        too_early_or_late = times.problem(stamp)
        if too_early_or_late:
            problems.add(too_early_or_late, where)
            continue
        if quantities and quantities[i].strip():
            quantity = _number(quantities[i])
            if quantity is None:
                problems.add(f"bad {fields.quantity_field}", where)
                continue
            if quantity <= 0:
                problems.add(f"return ({fields.quantity_field} <= 0)", where)
                continue
        if has_weight and raw_weights[i].strip():
            weight = _number(raw_weights[i])
            if weight is not None and weight <= 0:
                problems.add("negative or zero weight (a return)", where)
                continue
            if weight is None or weight > MAX_WEIGHT:
                problems.add("bad weight", where)
                continue
            kind = f"weight={weight!r}"
        else:
            kind = events[i].strip().lower() if has_event and events[i].strip() else fields.default_event
            weight = weights.of(kind or "")
            if weight is None:
                problems.add("unknown event", where)
                continue
        own = own_ids[i].strip() if own_ids else ""
        basket = baskets[i].strip()[:MAX_BASKET_CHARS] if baskets else ""
        keep_ids.append(own or event_identity(user, product, kind or "", stamp, basket))
        keep_baskets.append(basket)
        keep_users.append(user)
        keep_rows.append(row)
        keep_products.append(product)
        keep_weights.append(weight)
        keep_stamps.append(stamp)
    return EventLog(
        np.asarray(keep_users, dtype=object), np.asarray(keep_rows, dtype=np.int64),
        np.asarray(keep_weights, dtype=np.float32), np.asarray(keep_stamps, dtype=np.float64), problems,
        np.asarray(keep_ids, dtype=object), np.asarray(keep_products, dtype=object),
        np.asarray(keep_baskets if any(keep_baskets) else [], dtype=object),
    )


def _number(text: str) -> float | None:
    """A finite number, or None for text that is not one (NaN and infinities included)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None
