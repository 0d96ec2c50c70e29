"""Reading product catalogs (CSV, JSONL, Parquet) into validated products."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from vitrina.engine.errors import CatalogError

DEFAULT_TEXT_FIELDS = ("title", "description")
RESERVED_KEYS = ("id", "score")  # result keys that catalog columns may not overwrite
_CURRENCY = re.compile(r"^\s*[$€£¥]\s*|\s*(USD|EUR|GBP)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CatalogConfig:
    """Which catalog columns hold the id, the text to embed, the image, and the price.

    text_fields None means title and description, where present. image_field_required is set when
    the user named the image field explicitly: then a catalog without it is an error.
    """

    id_field: str = "id"
    text_fields: tuple[str, ...] | None = None
    image_field: str | None = "image"
    image_field_required: bool = False
    price_field: str = "price"


@dataclass(frozen=True)
class Product:
    id: str
    text: str
    image: str | None  # an absolute path or an http(s) URL
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Catalog:
    source: Path
    fields: CatalogConfig  # resolved: text_fields concrete, image_field None when absent
    products: list[Product]

    def __len__(self) -> int:
        return len(self.products)


def _open_text(path: Path) -> io.TextIOBase:
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    formats = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
    if ext not in formats:
        raise CatalogError(f"{path}: unknown catalog format {ext or '(no extension)'!r}; use .csv, .tsv, .jsonl or .parquet")
    return formats[ext]


def _csv_records(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    f = _open_text(path)
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise CatalogError(f"{path}: the file is empty (no header line)") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        f.close()
        raise CatalogError(f"{path}, line 1: unparsable header: {exc}") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        f.close()
        raise CatalogError(f"{path}, line 1: duplicate column names {dupes}")

    def rows() -> Iterator[tuple[str, dict]]:
        with f:
            start = reader.line_num + 1
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise CatalogError(f"{path}, line {start}: unparsable row: {exc}") from None
                if values and len(values) != len(header):
                    raise CatalogError(
                        f"{path}, line {start}: unparsable row: expected {len(header)} fields, found {len(values)}"
                    )
                if values:
                    yield f"line {start}", {h: (v if v != "" else None) for h, v in zip(header, values)}
                start = reader.line_num + 1

    return header, rows()


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict]]:
    field_limit = csv.field_size_limit()  # the same per-field limit as CSV (131,072 characters by default)
    line_limit = 256 * field_limit  # a line is never read whole beyond this (a file without newlines)
    with _open_text(path) as f:
        for number, line in enumerate(iter(lambda: f.readline(line_limit + 1), ""), start=1):
            if len(line) > line_limit:
                raise CatalogError(f"{path}, line {number}: unparsable row: longer than {line_limit:,} characters")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}, line {number}: unparsable row: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise CatalogError(f"{path}, line {number}: unparsable row: expected a JSON object, got {type(record).__name__}")
            for name, value in record.items():
                size = len(value) if isinstance(value, str) else len(json.dumps(value)) if isinstance(value, (list, dict)) else 0
                if size > field_limit:
                    raise CatalogError(f"{path}, line {number}: field {name!r} is {size:,} characters long; "
                                       f"at most {field_limit:,} are allowed (as in CSV)")
            yield f"line {number}", record


def _parquet_records(path: Path) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise CatalogError(f"{path}: not a readable Parquet file: {exc}") from None
    columns = parquet.schema_arrow.names

    def rows() -> Iterator[tuple[str, dict]]:
        number = 0
        for batch in parquet.iter_batches(batch_size=8192):
            for record in batch.to_pylist():
                number += 1
                yield f"row {number}", record

    return columns, rows()


def _stream_records(path: Path) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """The column names and a lazy stream of (where, record); JSONL takes one extra pass for the names."""
    fmt = _format_of(path)
    with _read_errors(path):
        if fmt in ("csv", "tsv"):
            columns, rows = _csv_records(path, "," if fmt == "csv" else "\t")
        elif fmt == "parquet":
            columns, rows = _parquet_records(path)
        else:
            columns = []
            for _, record in _jsonl_records(path):
                columns.extend(k for k in record if k not in columns)
            rows = _jsonl_records(path)
    return columns, _guarded(path, rows)


def _guarded(path: Path, rows: Iterator[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
    with _read_errors(path):
        yield from rows


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Low-level read errors as CatalogErrors naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CatalogError(f"catalog file not found: {path}") from None
        raise CatalogError(f"{path}: cannot read the file: {exc}") from None


def _as_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    return str(value).strip()


def join_text(values: Sequence[Any]) -> str:
    """A product's text: its text fields' values, non-empty ones joined by newlines."""
    return "\n".join(t for t in (_as_text(v) for v in values) if t)


def metadata_key(field_name: str) -> str:
    """The key a catalog column is stored under in product metadata (reserved names get a prefix)."""
    return f"catalog_{field_name}" if field_name in RESERVED_KEYS else field_name


def parse_price(value: Any, where: str, field_name: str) -> float | None:
    """A non-negative price from a number or text like '12.99', '$12.99', '12.99 USD'."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise CatalogError(f"{where}: field {field_name!r} is not a price: {value!r}")
    if isinstance(value, (int, float)):
        price = float(value)
    else:
        try:
            price = float(_CURRENCY.sub("", str(value)))
        except ValueError:
            raise CatalogError(f"{where}: field {field_name!r} is not a price: {value!r}") from None
    if not math.isfinite(price) or price < 0:
        raise CatalogError(f"{where}: field {field_name!r} must be a non-negative number, got {value!r}")
    return price


def resolve_fields(path: Path, columns: list[str], fields: CatalogConfig) -> CatalogConfig:
    """Check the requested fields against the file's columns and fill in defaults."""
    listing = ", ".join(columns) if columns else "none"
    if fields.id_field not in columns:
        raise CatalogError(f"{path}: no id field {fields.id_field!r} (columns: {listing}); set --id-field")
    if fields.text_fields is None:
        text_fields = tuple(f for f in DEFAULT_TEXT_FIELDS if f in columns)
        if not text_fields:
            raise CatalogError(
                f"{path}: no text field: the default fields {', '.join(DEFAULT_TEXT_FIELDS)} are absent "
                f"(columns: {listing}); set --text-fields"
            )
    else:
        missing = [f for f in fields.text_fields if f not in columns]
        if missing:
            raise CatalogError(f"{path}: text field {missing[0]!r} is not a column (columns: {listing})")
        text_fields = fields.text_fields
    image_field = fields.image_field
    if image_field and image_field not in columns:
        if fields.image_field_required:
            raise CatalogError(f"{path}: image field {image_field!r} is not a column (columns: {listing})")
        image_field = None
    return replace(fields, text_fields=text_fields, image_field=image_field)


def read_catalog(path: str | Path, fields: CatalogConfig | None = None) -> Catalog:
    """Read and validate a whole catalog; any bad row raises CatalogError naming file, line/row and field."""
    stream = stream_catalog(path, fields)
    products = list(stream.products)
    if not products:
        raise CatalogError(f"{stream.source}: the catalog has no products")
    return Catalog(stream.source, stream.fields, products)


def count_records(path: str | Path) -> int | None:
    """How many records a catalog file holds, cheaply (no validation); None when unknown."""
    path = Path(path).expanduser()
    fmt = _format_of(path)
    with _read_errors(path):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "jsonl":
            with _open_text(path) as f:
                return sum(1 for line in f if line.strip())
        with _open_text(path) as f:
            reader = csv.reader(f, delimiter="," if fmt == "csv" else "\t")
            try:
                return max(0, sum(1 for row in reader if row) - 1)
            except csv.Error:
                return None  # the real read names the bad line


@dataclass
class CatalogStream:
    """A catalog read lazily: products are validated as they stream (a bad row raises when reached)."""

    source: Path
    fields: CatalogConfig  # resolved, as in Catalog
    products: Iterator[Product]


def stream_catalog(path: str | Path, fields: CatalogConfig | None = None) -> CatalogStream:
    """Open a catalog for streaming: CSV/TSV row by row, Parquet in pyarrow record batches."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatalogError(f"catalog file not found: {path}")
    columns, records = _stream_records(path)
    fields = resolve_fields(path, columns, fields or CatalogConfig())
    return CatalogStream(path, fields, _products(path, fields, records))


def _products(path: Path, fields: CatalogConfig, records: Iterator[tuple[str, dict]]) -> Iterator[Product]:
    base_dir = path.resolve().parent
    seen: dict[str, str] = {}
    for where, record in records:
        located = f"{path}, {where}"
        pid = _as_id(record.get(fields.id_field))
        if pid is None:
            raise CatalogError(f"{located}: field {fields.id_field!r} (the product id) is missing or empty")
        if pid in seen:
            raise CatalogError(f"{located}: field {fields.id_field!r}: duplicate id {pid!r} (first at {seen[pid]})")
        seen[pid] = where
        text = join_text([record.get(f) for f in fields.text_fields])
        if not text:
            raise CatalogError(
                f"{located}: no text to embed: field {' and '.join(map(repr, fields.text_fields))} "
                f"{'is' if len(fields.text_fields) == 1 else 'are all'} empty"
            )
        metadata = {}
        for key, value in record.items():
            if key == fields.id_field:
                continue
            if key == fields.price_field:
                value = parse_price(value, located, key)
            metadata[metadata_key(key)] = value
        image = None
        if fields.image_field:
            raw = _as_text(record.get(fields.image_field))
            image = resolve_image_source(raw, base_dir) if raw else None
        yield Product(pid, text, image, metadata)


def resolve_image_source(raw: str, base_dir: Path) -> str:
    """An http(s) URL unchanged, else an absolute path (relative paths are taken from base_dir)."""
    if raw.startswith(("http://", "https://")):
        return raw
    p = Path(raw).expanduser()
    return str(p if p.is_absolute() else base_dir / p)
