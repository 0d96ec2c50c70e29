"""Answers as the API returns them: hits with JSON-safe metadata and served image URLs, and the index version."""

import math
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException

from vitrina.encoders.image_io import is_url
from vitrina.engine.data.catalog import image_sources, metadata_key, split_image_field
from vitrina.engine.query.search import SearchHit
from vitrina.serving.live import LiveIndex


def known(index: LiveIndex, product_id: str) -> int:
    """The product's row; 404 for an id the index does not hold."""
    if product_id not in index.session.products:
        raise HTTPException(404, f"unknown product id {product_id!r}")
    return index.session.products.row_of(product_id)


def results(index: LiveIndex, hits: list[SearchHit], personalised: bool | None = None,
            corrected_query: str | None = None) -> dict[str, Any]:
    """`{"results": [...], "index_version": ...}`, with `personalised` when a shopper was asked for and
    `corrected_query` when typos in the query were corrected."""
    out: dict[str, Any] = {"results": [clean_metadata(public_image(index, h.id, h.to_json())) for h in hits],
                           "index_version": index.version}
    if personalised is not None:
        out["personalised"] = personalised
    if corrected_query is not None:
        out["corrected_query"] = corrected_query
    return out


def public_image(index: LiveIndex, product_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with a local image path replaced by the image's URL on this server (http(s) URLs kept).
    Several images per product: each image column holds its images' URLs (`/products/ID/image?n=ORDINAL`),
    a list where the catalog wrote several."""
    field = index.session.manifest.catalog.get("image_field")
    key = metadata_key(field) if field else None
    value = record.get(key) if key else None
    url = f"/products/{quote(product_id, safe='')}/image"
    if key in record and isinstance(value, str) and len(image_sources([value])) <= 1:  # one image, as always
        if not value.strip() or is_url(value.strip()):
            return record
        return {**record, key: url}
    out, ordinal = dict(record), 0
    for name in split_image_field(field):
        column = metadata_key(name)
        sources = image_sources([record.get(column)])
        urls = [s if is_url(s) else f"{url}?n={ordinal + i}" for i, s in enumerate(sources)]
        ordinal += len(sources)
        if column in record and sources:
            out[column] = urls if len(urls) > 1 or not isinstance(record[column], str) else urls[0]
    return out


def clean_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values: NaN and infinities (which JSON cannot carry) become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
