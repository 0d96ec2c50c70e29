"""Reading product catalogs (CSV, JSONL, Parquet files, or records given in Python) into validated products."""

from __future__ import annotations

import csv
import datetime
import decimal
import gzip
import hashlib
import io
import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

if TYPE_CHECKING:
    import pandas
    import pyarrow

from vitrina.engine.build.groups import grouping_for
from vitrina.engine.errors import CatalogError
from vitrina.errors import Param

DEFAULT_TEXT_FIELDS = ("title", "description")
RESERVED_KEYS = ("id", "score")  # result keys that catalog columns may not overwrite
_CURRENCY = re.compile(r"^\s*[$€£¥]\s*|\s*(USD|EUR|GBP)\s*$", re.IGNORECASE)
RECORDS = "records"  # how messages name a catalog given as records, a pyarrow Table or a DataFrame
RECORDS_SOURCE = "<records>"  # the manifest's catalog source for them, under the folder their images resolve in
# scalar values a record may hold besides str, int, float, bool and None (pyarrow stores them as they are)
_SCALARS = (str, int, float, bool, type(None), datetime.date, datetime.time, datetime.timedelta, decimal.Decimal)

# A catalog: a file (CSV, TSV, JSONL or Parquet), or its records: dicts, a pyarrow Table or a pandas DataFrame.
CatalogSource = Union[str, os.PathLike, Sequence[Mapping[str, Any]], "pyarrow.Table", "pandas.DataFrame"]


@dataclass(frozen=True)
class CatalogConfig:
    """Which catalog columns hold the id, the text to embed, the image, and the price.

    text_fields None means title and description, where present. image_field_required is set when
    the user named the image field explicitly: then a catalog without it is an error. image_field may name
    several columns ("front,back"), and each may hold several images (a list, a JSON array or `|`-separated);
    a product keeps at most max_images of them (the rest are refused and reported at indexing).
    """

    id_field: str = "id"
    text_fields: tuple[str, ...] | None = None
    image_field: str | None = "image"
    image_field_required: bool = False
    price_field: str = "price"
    group_field: str | None = None  # products sharing this column's value are one group (engine.build.groups)
    collapse_duplicates: float | None = None  # else: group equal titles with image cosine >= this (None: off)
    max_images: int = 8  # images kept per product; more are refused (counted in the build's image failures)

    @property
    def image_fields(self) -> tuple[str, ...]:
        """The image columns, in order (image_field "front,back" names two)."""
        return split_image_field(self.image_field)


@dataclass(frozen=True)
class Product:
    id: str
    text: str
    image: str | None  # an absolute path or an http(s) URL: the first of `images`
    metadata: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()  # every image (resolved like `image`), by image ordinal; () with image: just it
    images_refused: int = 0  # images beyond CatalogConfig.max_images, left out

    @property
    def image_sources(self) -> tuple[str, ...]:
        """The product's images by ordinal (its one image for products made with `image` alone)."""
        return self.images or ((self.image,) if self.image else ())


@dataclass
class CatalogOrigin:
    """Where a catalog came from: a file, or records given in Python (`path` None)."""

    path: Path | None
    image_dir: Path  # relative image paths resolve here; images may always be read from it
    fingerprint: Callable[[], str] | None = None  # records: a digest of their content (computed when asked)
    count: int | None = None  # records: how many there are

    def size(self) -> int | None:
        """How many records the catalog holds (a file's counted cheaply, unvalidated); None when unknown."""
        return count_records(self.path) if self.path is not None else self.count

    @property
    def label(self) -> str:
        """How messages name the catalog: the file, or `records`."""
        return RECORDS if self.path is None else str(self.path)

    @property
    def manifest_source(self) -> str:
        """The manifest's `catalog.source`: the file, resolved; for records `<records>` in their image folder
        (whose parent, like a file's, is where a product's relative image path is looked up)."""
        return str(self.image_dir / RECORDS_SOURCE) if self.path is None else str(self.path.resolve())


@dataclass
class Catalog:
    origin: CatalogOrigin
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


def resolve_fields(source: str | Path, columns: list[str], fields: CatalogConfig) -> CatalogConfig:
    """Check the requested fields against the catalog's columns (`source` names it) and fill in defaults."""
    path = source
    listing = ", ".join(columns) if columns else "none"
    if fields.id_field not in columns:
        raise CatalogError("{path}: no id field {field!r} (columns: {listing}); set {id_field}", path=path,
                           field=fields.id_field, listing=listing, id_field=Param("id_field"))
    if fields.text_fields is None:
        text_fields = tuple(f for f in DEFAULT_TEXT_FIELDS if f in columns)
        if not text_fields:
            raise CatalogError(
                "{path}: no text field: the default fields {defaults} are absent (columns: {listing}); set {text_fields}",
                path=path, defaults=", ".join(DEFAULT_TEXT_FIELDS), listing=listing, text_fields=Param("text_fields"))
    else:
        missing = [f for f in fields.text_fields if f not in columns]
        if missing:
            raise CatalogError(f"{path}: text field {missing[0]!r} is not a column (columns: {listing})")
        text_fields = fields.text_fields
    image_field = fields.image_field
    if image_field and image_field not in columns:
        missing = [f for f in split_image_field(image_field) if f not in columns]
        if missing and fields.image_field_required:
            raise CatalogError(f"{path}: image field {missing[0]!r} is not a column (columns: {listing})")
        image_field = image_field if not missing else None
    if isinstance(fields.max_images, bool) or not isinstance(fields.max_images, int) or fields.max_images < 1:
        raise CatalogError(f"max_images must be a whole number of at least 1, got {fields.max_images!r}")
    grouping_for(columns, text_fields, fields.group_field, fields.collapse_duplicates, path)  # a clear error now
    return replace(fields, text_fields=text_fields, image_field=image_field)


def read_catalog(catalog: CatalogSource, fields: CatalogConfig | None = None) -> Catalog:
    """Read and validate a whole catalog; any bad row raises CatalogError naming file (or `records`), line/row
    (or record) and field."""
    stream = stream_catalog(catalog, fields)
    products = list(stream.products)
    if not products:
        raise CatalogError(f"{stream.origin.label}: the catalog has no products")
    return Catalog(stream.origin, stream.fields, products)


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

    origin: CatalogOrigin
    fields: CatalogConfig  # resolved, as in Catalog
    products: Iterator[Product]


def is_catalog_file(catalog: object) -> bool:
    """A catalog named by its file (a str is always a path), not given as records."""
    return isinstance(catalog, (str, os.PathLike))


def stream_catalog(catalog: CatalogSource, fields: CatalogConfig | None = None) -> CatalogStream:
    """Open a catalog for streaming: CSV/TSV row by row, Parquet in pyarrow record batches, records as given.

    Records (dicts, a pyarrow Table or a pandas DataFrame) are checked like a file's rows; their relative
    image paths resolve in the current working directory, which plays the part of a catalog file's folder."""
    if is_catalog_file(catalog):
        path = Path(catalog).expanduser()
        if not path.is_file():
            raise CatalogError(f"catalog file not found: {path}")
        columns, records = _stream_records(path)
        origin = CatalogOrigin(path, path.resolve().parent)
    else:
        columns, records, fingerprint, count = _stream_given_records(catalog)
        origin = CatalogOrigin(None, Path.cwd().resolve(), fingerprint, count)
    fields = resolve_fields(origin.label, columns, fields or CatalogConfig())
    return CatalogStream(origin, fields, _products(origin, fields, records))


def _products(origin: CatalogOrigin, fields: CatalogConfig, records: Iterator[tuple[str, dict]]) -> Iterator[Product]:
    seen: dict[str, str] = {}
    for where, record in records:
        located = f"{origin.label}, {where}"
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
        image, images, refused = None, (), 0
        if fields.image_field:
            raw = image_sources([record.get(f) for f in fields.image_fields])
            refused = max(0, len(raw) - fields.max_images)
            images = tuple(resolve_image_source(r, origin.image_dir) for r in raw[:fields.max_images])
            image = images[0] if images else None
        yield Product(pid, text, image, metadata, images if len(images) > 1 else (), refused)


def split_image_field(image_field: str | None) -> tuple[str, ...]:
    """The columns an image field names: "front,back" -> ("front", "back"); None -> ()."""
    if not image_field:
        return ()
    return tuple(f.strip() for f in str(image_field).split(",") if f.strip())


def image_sources(values: Sequence[Any]) -> list[str]:
    """A product's image sources as written in its catalog, in ordinal order, from its image columns' values:
    each a single path or URL, a list, a JSON array string or a `|`-separated string (empty entries skipped).
    A value that looks like a JSON array but does not parse is kept whole (it then fails as one image)."""
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend(t for t in (_as_text(v) for v in value) if t)
            continue
        text = _as_text(value)
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                parsed = None
            if isinstance(parsed, list):
                out.extend(t for t in (_as_text(v) for v in parsed if not isinstance(v, (list, dict))) if t)
                continue
        if "|" in text:
            out.extend(t for t in (part.strip() for part in text.split("|")) if t)
        elif text:
            out.append(text)
    return out


def resolve_image_source(raw: str, base_dir: Path) -> str:
    """An http(s) URL unchanged, else an absolute path (relative paths are taken from base_dir)."""
    if raw.startswith(("http://", "https://")):
        return raw
    p = Path(raw).expanduser()
    return str(p if p.is_absolute() else base_dir / p)


# --- records given in Python ------------------------------------------------------------------------------------

def records_table(catalog: object) -> "pyarrow.Table | None":
    """A pyarrow Table as it is, a pandas DataFrame (recognised by its shape, pandas is not imported) as a
    Table; None for anything else."""
    import pyarrow as pa

    if isinstance(catalog, pa.Table):
        return catalog
    if all(hasattr(catalog, name) for name in ("columns", "dtypes", "iloc")):
        try:
            return pa.Table.from_pandas(catalog, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise CatalogError(f"{RECORDS}: the DataFrame cannot be read as a table: {exc}") from None
    return None


def _stream_given_records(catalog: object) -> tuple[list[str], Iterator[tuple[str, dict]], Callable[[], str], int]:
    """The column names, a stream of (where, record), a content fingerprint and the number of records given
    in Python."""
    table = records_table(catalog)
    if table is not None:
        return _table_records(table)
    if isinstance(catalog, (bytes, bytearray, Mapping)) or not isinstance(catalog, Iterable):
        raise CatalogError(f"{RECORDS}: expected a catalog file, a list of dicts (one per product), a pyarrow Table or "
                           f"a pandas DataFrame; got {type(catalog).__name__}")
    records = [_checked_record(number, record) for number, record in enumerate(catalog)]
    if not records:
        raise CatalogError(f"{RECORDS}: the catalog has no products")
    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)

    def fingerprint() -> str:
        digest = hashlib.sha256()
        for record in records:
            digest.update(json.dumps(list(record.items()), default=repr, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
        return digest.hexdigest()

    return columns, ((f"record {number}", record) for number, record in enumerate(records)), fingerprint, len(records)


def _checked_record(number: int, record: object) -> dict:
    """A record as a plain dict of JSON-like values (numbers of other libraries as Python numbers), or a
    CatalogError naming it: records are held to what a JSONL line may hold, and to its size limit."""
    where = f"{RECORDS}, record {number}"
    if not isinstance(record, Mapping):
        raise CatalogError(f"{where}: expected a mapping of field names to values, got {type(record).__name__}")
    field_limit = csv.field_size_limit()
    checked = {}
    for name, value in record.items():
        if not isinstance(name, str):
            raise CatalogError(f"{where}: field names must be strings, got {type(name).__name__} {name!r}")
        if not isinstance(value, (*_SCALARS, list, tuple, dict)) and getattr(value, "shape", None) == () \
                and callable(getattr(value, "item", None)):
            value = value.item()  # a NumPy scalar as the Python value it holds
        if isinstance(value, float) and math.isnan(value):
            value = None  # missing, as pandas and pyarrow read NaN
        if isinstance(value, (list, tuple, dict)):
            try:
                size = len(json.dumps(value))
            except (TypeError, ValueError, RecursionError) as exc:
                raise CatalogError(f"{where}: field {name!r} holds a value that is not JSON data: {exc}") from None
        elif isinstance(value, _SCALARS):
            size = len(value) if isinstance(value, str) else 0
        else:
            raise CatalogError(f"{where}: field {name!r} holds a {type(value).__name__}; a value must be text, a number, "
                               "a boolean, None, a date or time, or a list or dict of JSON values")
        if size > field_limit:
            raise CatalogError(f"{where}: field {name!r} is {size:,} characters long; "
                               f"at most {field_limit:,} are allowed (as in CSV)")
        checked[name] = value
    return checked


def _table_records(table: "pyarrow.Table") -> tuple[list[str], Iterator[tuple[str, dict]], Callable[[], str], int]:
    columns = [str(name) for name in table.column_names]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise CatalogError(f"{RECORDS}: duplicate column names {dupes}")
    if table.num_rows == 0:
        raise CatalogError(f"{RECORDS}: the catalog has no products")

    def rows() -> Iterator[tuple[str, dict]]:
        number = 0
        for batch in table.to_batches(max_chunksize=8192):
            for record in batch.to_pylist():
                yield f"record {number}", record
                number += 1

    def fingerprint() -> str:
        digest = hashlib.sha256(str(table.schema).encode())
        for _, record in rows():
            digest.update(json.dumps(list(record.items()), default=repr, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
        return digest.hexdigest()

    return columns, rows(), fingerprint, table.num_rows
