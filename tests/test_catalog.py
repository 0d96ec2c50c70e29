"""Catalog reading: formats, field mapping, metadata, and every bad-input message."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vitrina.engine.data.catalog import CatalogConfig, read_catalog
from vitrina.engine.errors import CatalogError
from tests.conftest import write_csv

ROWS = [
    {"id": "007", "title": "Red running shoes", "description": "Light mesh", "image": "a.jpg", "brand": "Acme", "price": "49.90"},
    {"id": "008", "title": "Steel watch", "description": "", "image": "", "brand": "Tick", "price": "$120"},
]


def test_csv_keeps_string_ids_metadata_and_resolves_images(tmp_path):
    catalog = read_catalog(write_csv(tmp_path / "c.csv", ROWS))
    first, second = catalog.products
    assert [p.id for p in catalog.products] == ["007", "008"]  # leading zeros kept
    assert first.text == "Red running shoes\nLight mesh"
    assert second.text == "Steel watch"
    assert first.image == str(tmp_path / "a.jpg") and second.image is None
    assert first.metadata["brand"] == "Acme" and first.metadata["price"] == 49.90
    assert second.metadata["price"] == 120.0
    assert "id" not in first.metadata
    assert catalog.fields.text_fields == ("title", "description")


def test_jsonl_and_parquet_read_the_same_products(tmp_path):
    records = [{**r, "price": float(r["price"].lstrip("$"))} for r in ROWS]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "c.parquet")
    from_jsonl = read_catalog(tmp_path / "c.jsonl")
    from_parquet = read_catalog(tmp_path / "c.parquet")
    assert [(p.id, p.text, p.image) for p in from_jsonl.products] == [(p.id, p.text, p.image) for p in from_parquet.products]
    assert from_parquet.products[1].metadata["price"] == 120.0


def test_field_mapping_flags(tmp_path):
    rows = [{"sku": "A1", "name": "Blue jeans", "notes": "slim", "photo": "https://example.com/a.jpg"}]
    fields = CatalogConfig(id_field="sku", text_fields=("name", "notes"), image_field="photo", image_field_required=True)
    product = read_catalog(write_csv(tmp_path / "c.csv", rows), fields).products[0]
    assert (product.id, product.text, product.image) == ("A1", "Blue jeans\nslim", "https://example.com/a.jpg")


def test_catalog_without_image_column_is_text_only(tmp_path):
    catalog = read_catalog(write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat"}]))
    assert catalog.fields.image_field is None and catalog.products[0].image is None


def _error(path: Path, fields: CatalogConfig | None = None) -> str:
    with pytest.raises(CatalogError) as info:
        read_catalog(path, fields)
    return str(info.value)


def test_missing_id_column_names_file_and_field(tmp_path):
    msg = _error(write_csv(tmp_path / "c.csv", [{"sku": "1", "title": "Hat"}]))
    assert "c.csv" in msg and "'id'" in msg and "--id-field" in msg and "sku" in msg


def test_empty_id_names_line_and_field(tmp_path):
    path = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat"}, {"id": "", "title": "Cap"}])
    msg = _error(path)
    assert f"{path}, line 3" in msg and "'id'" in msg and "missing or empty" in msg


def test_duplicate_id_names_both_lines(tmp_path):
    path = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat"}, {"id": "2", "title": "Cap"}, {"id": "1", "title": "Scarf"}])
    msg = _error(path)
    assert f"{path}, line 4" in msg and "duplicate id '1'" in msg and "first at line 2" in msg and "'id'" in msg


def test_missing_text_fields(tmp_path):
    no_default = write_csv(tmp_path / "a.csv", [{"id": "1", "name": "Hat"}])
    assert "--text-fields" in _error(no_default) and "title, description" in _error(no_default)
    unknown = _error(write_csv(tmp_path / "b.csv", [{"id": "1", "title": "Hat"}]), CatalogConfig(text_fields=("name",)))
    assert "text field 'name' is not a column" in unknown


def test_row_with_empty_text_names_line_and_fields(tmp_path):
    path = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat", "description": ""}, {"id": "2", "title": "", "description": ""}])
    msg = _error(path)
    assert f"{path}, line 3" in msg and "'title' and 'description' are all empty" in msg


def test_unparsable_csv_row_names_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,title\n1,Hat\n2,Cap,extra\n')
    assert f"{path}, line 3: unparsable row: expected 2 fields, found 3" in _error(path)
    quoted = tmp_path / "q.csv"
    quoted.write_text('id,title\n1,"Hat"x\n')
    assert f"{quoted}, line 2: unparsable row" in _error(quoted)


def test_unparsable_jsonl_row_names_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "1", "title": "Hat"}\n{"id": "2", "title": \n')
    assert f"{path}, line 2: unparsable row: not valid JSON" in _error(path)
    path.write_text('{"id": "1", "title": "Hat"}\n[1, 2]\n')
    assert "line 2: unparsable row: expected a JSON object" in _error(path)


def test_unparsable_price_names_line_and_field(tmp_path):
    path = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat", "price": "9.99"}, {"id": "2", "title": "Cap", "price": "cheap"}])
    msg = _error(path)
    assert f"{path}, line 3" in msg and "field 'price' is not a price: 'cheap'" in msg
    negative = write_csv(tmp_path / "n.csv", [{"id": "1", "title": "Hat", "price": "-3"}])
    assert "non-negative" in _error(negative)


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "title": "Hat"}, {"id": None, "title": "Cap"}]), path)
    assert f"{path}, row 2: field 'id'" in _error(path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert "not a readable Parquet file" in _error(broken)


def test_explicit_image_field_must_exist(tmp_path):
    path = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "Hat"}])
    msg = _error(path, CatalogConfig(image_field="photo", image_field_required=True))
    assert "image field 'photo' is not a column" in msg


def test_missing_file_empty_file_and_unknown_format(tmp_path):
    assert "catalog file not found" in _error(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _error(tmp_path / "empty.csv")
    (tmp_path / "c.xlsx").write_text("x")
    assert "unknown catalog format '.xlsx'" in _error(tmp_path / "c.xlsx")
    (tmp_path / "header.csv").write_text("id,title\n")
    assert "no products" in _error(tmp_path / "header.csv")


def test_reserved_metadata_names_are_renamed(tmp_path):
    rows = [{"sku": "1", "title": "Hat", "id": "legacy-9", "score": "5"}]
    product = read_catalog(write_csv(tmp_path / "c.csv", rows), CatalogConfig(id_field="sku")).products[0]
    assert product.metadata["catalog_id"] == "legacy-9" and product.metadata["catalog_score"] == "5"
