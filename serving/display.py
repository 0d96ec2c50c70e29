"""What the search page shows of a catalog: the card's display fields, the facet columns, the currency, and
whether products have photos and "More like this" (answered to the page by `GET /page/config`).

Defaults are found from the catalog's columns: the card's title is the first of TITLE_COLUMNS present
(else the first text field), followed by the brand and colour columns; facets are the category, brand
and colour columns plus other text columns with few distinct values (FACET_MAX_VALUES), at most
DEFAULT_FACETS of them. `vitrina serve --display-fields/--facet-fields/--currency` overrides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from vitrina.engine.data.catalog import split_image_field
from vitrina.index.products import ID_COLUMN
from vitrina.serving.config import ServingConfig, ServingConfigError

if TYPE_CHECKING:
    from vitrina.engine.query.search import SearchSession

TITLE_COLUMNS = ("title", "name", "prod_name", "product_name", "productDisplayName", "product_title", "display_name")
COLOUR_COLUMNS = ("colour_group_name", "baseColour", "colour", "color", "colour_name", "color_name",
                  "perceived_colour_master_name")
DEFAULT_FACETS = 4  # facet columns shown by default
FACET_MAX_VALUES = 30  # a column with more distinct values is no default facet (unless it is the category, brand or colour)
NAMED_FACET_MAX_VALUES = 200  # ... the category, brand or colour column may have this many


def check_page_fields(serving: ServingConfig, columns: Sequence[str]) -> None:
    """A ServingConfigError naming a display or facet field the catalog does not have (with the ones it has)."""
    for flag, fields in (("--display-fields", serving.display_fields), ("--facet-fields", serving.facet_fields or ())):
        for name in fields:
            if name not in columns:
                raise ServingConfigError(f"{flag}: the catalog has no column {name!r} "
                                         f"(columns: {', '.join(c for c in columns if c != ID_COLUMN)})")


def page_config(session: SearchSession, serving: ServingConfig) -> dict[str, Any]:
    """The page's settings for one index version: display and facet fields (configured ones the catalog
    lacks are left out, e.g. after a reload to another catalog), currency, price column, photos, similar space."""
    table = session.products.table
    columns = [c for c in table.column_names if c != ID_COLUMN]
    image_field = session.manifest.catalog.get("image_field")
    has_images = "image" in session.manifest.spaces
    display = [f for f in serving.display_fields if f in columns] or default_display_fields(session, columns)
    if serving.facet_fields is None:
        facets = default_facet_fields(session, table, columns, image_field)
    else:
        facets = [f for f in serving.facet_fields if f in columns]
    if has_images:
        similar: str | None = session.default_image_space()
    else:
        similar = "text" if "text" in session.manifest.spaces else None
    return {
        "display_fields": display,
        "currency": serving.currency,
        "facet_fields": facets,
        "price_field": session.filters.columns["price"],
        "image_field": image_field if has_images else None,
        "has_images": has_images,
        "similar_space": similar,  # the space "More like this" asks for (text on text-only catalogs); None: no button
        "max_k": serving.max_k,
    }


def default_display_fields(session: SearchSession, columns: Sequence[str]) -> list[str]:
    """The title column (else the first text field), then the brand and colour columns, where present."""
    title = next((c for c in TITLE_COLUMNS if c in columns), None)
    if title is None:
        text_fields = [f for f in session.manifest.catalog.get("text_fields") or () if f in columns]
        title = text_fields[0] if text_fields else None
    brand = session.filters.columns["brand"]
    colour = next((c for c in COLOUR_COLUMNS if c in columns), None)
    return list(dict.fromkeys(f for f in (title, brand, colour) if f is not None))


def default_facet_fields(session: SearchSession, table: pa.Table, columns: Sequence[str],
                         image_field: str | None) -> list[str]:
    """The category, brand and colour columns, then other text columns with 2 to FACET_MAX_VALUES distinct values
    (and at most one per two products), in catalog order, at most DEFAULT_FACETS; titles, images, prices and
    numbers never."""
    roles = session.filters.columns
    named = [roles["category"], roles["brand"], next((c for c in COLOUR_COLUMNS if c in columns), None)]
    skip = {image_field, *split_image_field(image_field), roles["price"], *TITLE_COLUMNS}
    chosen: list[str] = []
    for column in [c for c in named if c is not None] + [c for c in columns if c not in named]:
        if len(chosen) == DEFAULT_FACETS:
            break
        if column in skip or column in chosen or not _is_text(table.schema.field(column).type):
            continue
        if session.filters.is_numeric(column):  # codes and numbers read from a CSV as text
            continue
        limit = NAMED_FACET_MAX_VALUES if column in named else min(FACET_MAX_VALUES, table.num_rows // 2)
        if 2 <= _distinct(table.column(column)) <= limit:  # other columns' values must repeat
            chosen.append(column)
    return chosen


def _distinct(column: pa.ChunkedArray) -> int:
    """Distinct non-empty values of a column."""
    return int(pc.count_distinct(pc.if_else(pc.equal(column, ""), None, column), mode="only_valid").as_py())


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
