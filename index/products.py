"""ProductTable: product ids and metadata, row-aligned with the vector ids in the FAISS indexes."""

from __future__ import annotations

from functools import cached_property
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from vitrina.index.errors import IndexStoreError

ID_COLUMN = "id"
ROWS_ALONE = 256  # rows whose metadata is converted alone before the whole table is


def string_column(values: Sequence[str | None]) -> pa.Array:
    """A string column of str or None values. Through pyarrow's StringBuilder where it has one (pyarrow tests it as
    `pyarrow.lib.StringBuilder`): `pa.array` of a Python list first imports pandas to ask whether the list is a
    pandas object, 0.2 s of every `vitrina index` whose catalog holds only text."""
    builder_type = getattr(pa.lib, "StringBuilder", None)
    if builder_type is None:
        return pa.array(values, type=pa.string())
    builder = builder_type()
    builder.append_values(values)
    return builder.finish()


def _column(values: list[Any]) -> pa.Array:
    """A typed column where the values agree on a type, else their JSON text."""
    if all(v is None or type(v) is str for v in values):
        return string_column(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values], type=pa.string())


class ProductTable:
    """Row r describes the product whose vectors carry id r."""

    def __init__(self, table: pa.Table) -> None:
        if ID_COLUMN not in table.column_names:
            raise IndexStoreError("product table has no id column")
        self.table = table
        self.ids: list[str] = table.column(ID_COLUMN).to_pylist()
        self._records: list[dict] | None = None  # every row's metadata, once many rows were asked for
        self._some: dict[int, dict] = {}  # the rows asked for so far, each converted alone

    @classmethod
    def from_records(cls, ids: Sequence[str], metadata: Sequence[dict[str, Any]]) -> "ProductTable":
        names: list[str] = []
        for record in metadata:
            names.extend(k for k in record if k not in names)
        columns = {ID_COLUMN: string_column(list(ids))}
        for name in names:
            columns[name] = _column([record.get(name) for record in metadata])
        return cls(pa.table(columns))

    @cached_property
    def _row_of(self) -> dict[str, int]:
        """Product id -> row, built on first use (55k ids: ~10 ms a fresh search showing rows does not need)."""
        return {pid: row for row, pid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._row_of

    @property
    def rows_by_id(self) -> Mapping[str, int]:
        """Product id -> row, for every product (read-only view)."""
        return MappingProxyType(self._row_of)

    def row_of(self, product_id: str) -> int:
        try:
            return self._row_of[product_id]
        except KeyError:
            raise IndexStoreError(f"unknown product id {product_id!r}") from None

    def metadata(self, row: int) -> dict[str, Any]:
        """The catalog's other columns for one product (id excluded). The first rows asked for are converted
        one by one (a search shows ten: converting 55k rows cost a fresh search 40 ms); from ROWS_ALONE on,
        the whole table at once."""
        if self._records is not None:
            return self._records[row]
        found = self._some.get(row)
        if found is None:
            if len(self._some) >= ROWS_ALONE:
                self._records = self.table.drop_columns([ID_COLUMN]).to_pylist()
                return self._records[row]
            if not -len(self.ids) <= row < len(self.ids):
                raise IndexError(f"product row {row} out of range")
            found = self.table.slice(row % len(self.ids), 1).drop_columns([ID_COLUMN]).to_pylist()[0]
            self._some[row] = found
        return found

    def save(self, path: Path) -> None:
        pq.write_table(self.table, path)

    @classmethod
    def load(cls, path: Path) -> "ProductTable":
        if not path.is_file():
            raise IndexStoreError(f"product table missing: {path}")
        try:
            table = pq.ParquetFile(path).read()  # not read_table: its dataset layer imports pandas
        except (pa.ArrowException, OSError) as exc:  # truncated or not Parquet
            raise IndexStoreError(f"{path} is damaged (truncated or not a Parquet file: {exc}); re-index it") from None
        return cls(table)
