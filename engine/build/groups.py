"""Product groups, computed at index time: one group id per product row, so search shows one hit per group.

Two ways to group, chosen when a catalog is indexed (`vitrina index|reindex --group-field F` or
`--collapse-duplicates`, `Index.build(group_field=..., collapse_duplicates=...)`):

- a group field: products with the same non-empty value of catalog column F form a group (H&M's
  `product_code`: the colours of one product). An empty or missing value is a group of its own.
- collapse duplicates: products whose normalised title is equal (the first text field, casefolded,
  runs of punctuation and whitespace made one space) AND whose image vectors are near-identical (cosine
  >= `DUPLICATE_COSINE`, 0.95, measured by benchmarks/variants.py `threshold` with the default image
  model: byte-identical re-uploads score 1.0 and 76% of photos re-saved smaller as JPEG q70 reach 0.95,
  while 1.0% of H&M colour variants and 1.5% of equal-titled fashion products with other photos do)
  form a group. Products without an image
  vector group by title alone when none of their equal-titled products has one either (a text-only
  catalog: equal normalised title only); otherwise a product without a vector stays alone.

The ids are stored per row in the version directory (`index.store.GROUPS_FILE`) and the way they were made in the
manifest (`catalog["groups"]`). Every write that changes the products (reindex, upsert, delete)
computes them again from the products and vectors of the new version, so they are never stale.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from vitrina.engine.errors import CatalogError
from vitrina.errors import Param

if TYPE_CHECKING:
    from vitrina.index import IndexDirectory

DUPLICATE_COSINE = 0.95  # image cosine from which equal-titled products are duplicates (benchmarks/variants.py)
MAX_GROUP_VALUE = 1_000  # characters of a group value that count (longer values are compared on this prefix)
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Grouping:
    """How an index groups its products: by a catalog column, or by collapsing duplicates (`cosine`)."""

    field: str | None = None
    cosine: float | None = None  # collapse duplicates: the image cosine threshold
    title_field: str | None = None  # collapse duplicates: the column whose normalised value must be equal

    def to_json(self) -> dict[str, Any]:
        if self.field is not None:
            return {"field": self.field}
        return {"collapse_duplicates": {"title_field": self.title_field, "cosine": self.cosine}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "Grouping | None":
        """The grouping a manifest's `catalog["groups"]` records (None: the index is not grouped)."""
        if not record:
            return None
        if record.get("field"):
            return cls(field=str(record["field"]))
        dupes = record.get("collapse_duplicates") or {}
        return cls(cosine=float(dupes.get("cosine", DUPLICATE_COSINE)), title_field=dupes.get("title_field"))


def grouping_for(columns: Sequence[str], text_fields: Sequence[str], group_field: str | None,
                 collapse_duplicates: float | None, source: str) -> Grouping | None:
    """The grouping a build asked for, checked against the catalog's columns (a CatalogError names a group
    field the catalog lacks, or the two asked together); None when neither was asked."""
    if group_field is not None and collapse_duplicates is not None:
        raise CatalogError("{group_field} and {collapse_duplicates} are two ways to group; give one",
                           group_field=Param("group_field"), collapse_duplicates=Param("collapse_duplicates"))
    if group_field is not None:
        if not isinstance(group_field, str) or not group_field.strip():
            raise CatalogError("{group_field} must name a catalog column", group_field=Param("group_field"))
        if group_field not in columns:
            raise CatalogError("{source}: group field {field!r} is not a column (columns: {listing}); check {group_field}",
                               source=source, field=group_field[:100], listing=", ".join(columns) or "none",
                               group_field=Param("group_field"))
        return Grouping(field=group_field)
    if collapse_duplicates is not None:
        cosine = float(collapse_duplicates)
        if not -1.0 <= cosine <= 1.0:
            raise CatalogError("{collapse_duplicates} is an image cosine between -1 and 1, got {value}",
                               collapse_duplicates=Param("collapse_duplicates"), value=collapse_duplicates)
        return Grouping(cosine=cosine, title_field=text_fields[0] if text_fields else None)
    return None


def normalised_title(value: Any) -> str:
    """A title as duplicates compare it: Unicode-normalised (NFKC), casefolded, runs of punctuation and
    whitespace one space, trimmed ("Red  T-Shirt!" and "red t shirt" are equal)."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return _NOT_WORD.sub(" ", text).strip()


def group_key(value: Any) -> str | None:
    """A group field's value as groups compare it (surrounding blanks dropped, at most MAX_GROUP_VALUE
    characters); None for an empty or missing value (the product is a group of its own)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text[:MAX_GROUP_VALUE] or None


def field_groups(values: Sequence[Any]) -> np.ndarray:
    """Group ids of the rows by their group field values: equal values share an id (ids numbered by first
    row); an empty value is a group of its own."""
    ids = np.empty(len(values), dtype=np.int64)
    seen: dict[str, int] = {}
    for row, value in enumerate(values):
        key = group_key(value)
        if key is None:
            ids[row] = row
        else:
            ids[row] = seen.setdefault(key, row)
    return _renumbered(ids)


def duplicate_groups(titles: Sequence[Any], vectors: np.ndarray | None, vector_rows: np.ndarray | None,
                     cosine: float) -> np.ndarray:
    """Group ids of the rows by equal normalised title and near-identical image vectors (see the module).

    Within one title, a row joins the group of the first earlier row whose vector it matches at `cosine`
    or more (single link, in row order)."""
    count = len(titles)
    ids = np.arange(count, dtype=np.int64)
    positions = np.full(count, -1, dtype=np.int64)
    if vectors is not None and vector_rows is not None and len(vector_rows):
        positions[np.asarray(vector_rows, dtype=np.int64)] = np.arange(len(vector_rows))
    by_title: dict[str, list[int]] = {}
    for row, title in enumerate(titles):
        key = normalised_title(title)
        if key:
            by_title.setdefault(key, []).append(row)
    for rows in by_title.values():
        if len(rows) < 2:
            continue
        members = np.asarray(rows, dtype=np.int64)
        has = positions[members] >= 0
        if not has.any():  # text only: the equal title decides
            ids[members] = members[0]
            continue
        with_vector = members[has]
        stored = np.asarray(vectors[positions[with_vector]], dtype=np.float32)
        similar = stored @ stored.T >= cosine
        for i, row in enumerate(with_vector):
            first = int(np.argmax(similar[i, : i + 1]))  # the earliest match (itself at worst)
            ids[row] = ids[with_vector[first]]
    return _renumbered(ids)


def _renumbered(ids: np.ndarray) -> np.ndarray:
    """Group ids 0..n-1 in order of each group's first row (`ids` holds a row of its group, the first row
    for the group's first row), so equal groupings store equal arrays."""
    return np.unique(ids, return_inverse=True)[1].astype(np.int64).reshape(-1)


def product_groups(grouping: Grouping, metadata: Sequence[Mapping[str, Any]], vectors: np.ndarray | None = None,
                   vector_rows: np.ndarray | None = None) -> np.ndarray:
    """The group id of every product row, from its catalog columns (`metadata`, row-aligned) and, to
    collapse duplicates, the image vectors (and the product row of each)."""
    from vitrina.engine.data.catalog import metadata_key

    if grouping.field is not None:
        key = metadata_key(grouping.field)
        return field_groups([record.get(key) for record in metadata])
    key = metadata_key(grouping.title_field) if grouping.title_field else None
    titles = [record.get(key) if key else None for record in metadata]
    return duplicate_groups(titles, vectors, vector_rows, float(grouping.cosine))


def check_upserted(grouping: Grouping | None, metadata: Sequence[Mapping[str, Any]], source: str) -> None:
    """Products upserted into a grouped index must carry its group field (a column of the file, or a key of
    some record): a CatalogError names it; a record without a value is a group of its own."""
    if grouping is None or grouping.field is None or not metadata:
        return
    from vitrina.engine.data.catalog import metadata_key

    key = metadata_key(grouping.field)
    if not any(key in record for record in metadata):
        raise CatalogError(f"{source}: the index groups products by {grouping.field!r}, and these products have "
                           f"no such field; add the column (an empty value makes a product a group of its own)")


def grouping_of(fields: Any) -> Grouping | None:
    """The grouping a resolved CatalogConfig asks for (its group field, or collapsing duplicates)."""
    if getattr(fields, "group_field", None):
        return Grouping(field=fields.group_field)
    if getattr(fields, "collapse_duplicates", None) is not None:
        text_fields = fields.text_fields or ()
        return Grouping(cosine=float(fields.collapse_duplicates), title_field=text_fields[0] if text_fields else None)
    return None


def attach_groups(directory: IndexDirectory, grouping: Grouping | None = None) -> None:
    """Compute the group ids of a directory about to be saved, and record how in its manifest: by `grouping`
    (a build), else as its manifest recorded (an upsert or delete keeps the grouping of the live version)."""
    grouping = grouping or Grouping.from_record(directory.manifest.catalog.get("groups"))
    if grouping is None:
        directory.groups = None
        return
    products = directory.products
    image = directory.spaces.get("image")
    vectors, rows = (None, None) if image is None else image.product_vectors()  # several images: their mean
    directory.groups = product_groups(grouping, [products.metadata(r) for r in range(len(products))], vectors, rows)
    directory.manifest.catalog["groups"] = grouping.to_json()


def grouping_settings(group_field: str | None, collapse_duplicates: bool | float | None) -> dict[str, Any]:
    """The CatalogConfig fields of `Index.build(group_field=, collapse_duplicates=)` that were given (True: the
    measured DUPLICATE_COSINE); an ArgumentError names a value of the wrong kind."""
    from vitrina.engine.errors import ArgumentError

    settings: dict[str, Any] = {}
    if group_field is not None:
        if not isinstance(group_field, str):
            raise ArgumentError("{group_field} must be a column name, not {kind}", group_field=Param("group_field"),
                                kind=type(group_field).__name__)
        settings["group_field"] = group_field
    if collapse_duplicates is True:
        settings["collapse_duplicates"] = DUPLICATE_COSINE
    elif isinstance(collapse_duplicates, (int, float)) and not isinstance(collapse_duplicates, bool):
        settings["collapse_duplicates"] = float(collapse_duplicates)
    elif collapse_duplicates not in (False, None):
        raise ArgumentError("{collapse_duplicates} is True, False or an image cosine, not {kind}",
                            collapse_duplicates=Param("collapse_duplicates"), kind=type(collapse_duplicates).__name__)
    return settings
