"""Catalog reading: formats, field mapping, metadata, and every bad-input message."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vitrina.engine.data.catalog import CatalogConfig, read_catalog
from vitrina.engine.errors import CatalogError
from tests.helpers import write_csv

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


# --- records given in Python: dicts, a pyarrow Table, a pandas DataFrame ----------------------------------------

def _records_error(records, fields: CatalogConfig | None = None) -> str:
    with pytest.raises(CatalogError) as info:
        read_catalog(records, fields)
    return str(info.value)


def test_records_read_like_the_same_csv_and_images_resolve_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from_csv = read_catalog(write_csv(tmp_path / "c.csv", ROWS))
    from_records = read_catalog(ROWS)
    assert [(p.id, p.text, p.image) for p in from_records.products] == [(p.id, p.text, p.image) for p in from_csv.products]
    assert from_records.products[0].metadata == from_csv.products[0].metadata
    assert from_records.products[1].metadata["description"] == ""  # values as given, as in JSONL (CSV has no "")
    assert from_records.products[0].image == str(tmp_path / "a.jpg")
    assert from_records.origin.path is None and from_records.origin.image_dir == tmp_path.resolve()
    assert from_records.origin.manifest_source == str(tmp_path.resolve() / "<records>")
    assert from_records.fields == from_csv.fields


def test_a_table_and_a_dataframe_read_like_the_dicts(tmp_path, monkeypatch):
    pd = pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    records = [{"sku": 7, "title": "Red shoes", "price": 49.9, "image": "a.jpg"},
               {"sku": 8, "title": "Watch", "price": None, "image": None}]
    fields = CatalogConfig(id_field="sku")
    expected = [(p.id, p.text, p.image, p.metadata) for p in read_catalog(records, fields).products]
    for given in (pa.Table.from_pylist(records), pd.DataFrame(records)):
        catalog = read_catalog(given, fields)
        assert [(p.id, p.text, p.image, p.metadata) for p in catalog.products] == expected
    assert expected[0][0] == "7" and expected[1][3]["price"] is None  # a NaN price of the DataFrame is missing
    frame = pd.DataFrame(records).set_index("title")  # the index is not a column
    assert _records_error(frame, fields).startswith("records: no text field")


def test_numpy_values_and_nan_in_records(tmp_path):
    np = pytest.importorskip("numpy")
    catalog = read_catalog([{"id": np.int64(3), "title": "Hat", "price": np.float32(2.5), "new": np.bool_(True)},
                            {"id": "4", "title": "Cap", "price": float("nan")}])
    first, second = catalog.products
    assert first.id == "3" and first.metadata == {"title": "Hat", "price": 2.5, "new": True}
    assert second.metadata["price"] is None
    assert "record 0: field 'id'" in _records_error([{"id": float("nan"), "title": "Hat"}])


def test_bad_records_name_the_record_and_field():
    assert "records, record 1: field 'id' (the product id) is missing or empty" in _records_error(
        [{"id": "1", "title": "Hat"}, {"id": " ", "title": "Cap"}])
    assert "records, record 2: field 'id': duplicate id '1' (first at record 0)" in _records_error(
        [{"id": "1", "title": "Hat"}, {"id": "2", "title": "Cap"}, {"id": 1, "title": "Scarf"}])
    assert "records, record 1: no text to embed: field 'title' is empty" in _records_error(
        [{"id": "1", "title": "Hat"}, {"id": "2", "title": ""}])
    assert "records, record 0: field 'price' is not a price: 'cheap'" in _records_error(
        [{"id": "1", "title": "Hat", "price": "cheap"}])
    assert "records: no id field 'sku'" in _records_error([{"id": "1", "title": "Hat"}], CatalogConfig(id_field="sku"))
    assert "records: image field 'photo' is not a column" in _records_error(
        [{"id": "1", "title": "Hat"}], CatalogConfig(image_field="photo", image_field_required=True))


def test_hostile_records_are_refused_with_what_is_wrong():
    assert "records: the catalog has no products" in _records_error([])
    assert "records: the catalog has no products" in _records_error(pa.table({"id": pa.array([], pa.string())}))
    assert "got dict" in _records_error({"id": "1", "title": "Hat"})  # one record, not a list of them
    assert "got int" in _records_error(42)
    assert "got bytes" in _records_error(b"id,title\n1,Hat\n")
    assert "records, record 1: expected a mapping of field names to values, got list" in _records_error(
        [{"id": "1", "title": "Hat"}, ["2", "Cap"]])
    assert "records, record 0: field names must be strings, got int 5" in _records_error([{"id": "1", "title": "Hat", 5: "x"}])
    assert "records, record 0: field 'maker' holds a object" in _records_error([{"id": "1", "title": "Hat", "maker": object()}])
    assert "field 'tags' holds a value that is not JSON data" in _records_error([{"id": "1", "title": "Hat", "tags": [object()]}])
    cyclic: list = []
    cyclic.append(cyclic)
    assert "field 'tags' holds a value that is not JSON data" in _records_error([{"id": "1", "title": "Hat", "tags": cyclic}])
    assert "records, record 0: field 'title' is 10,000,000 characters long" in _records_error([{"id": "1", "title": "x" * 10_000_000}])
    assert "field 'tags' is" in _records_error([{"id": "1", "title": "t", "tags": ["y" * 1000] * 200}])
    twice = pa.Table.from_arrays([pa.array(["1"]), pa.array(["Hat"]), pa.array(["Cap"])], names=["id", "title", "title"])
    assert "records: duplicate column names ['title']" in _records_error(twice)


def test_records_from_a_generator_and_nested_values_are_kept():
    catalog = read_catalog({"id": str(i), "title": f"item {i}", "tags": ["a", "b"], "size": {"eu": 40}} for i in range(3))
    assert [p.id for p in catalog.products] == ["0", "1", "2"] and catalog.origin.count == 3
    assert catalog.products[0].metadata["tags"] == ["a", "b"] and catalog.products[0].metadata["size"] == {"eu": 40}
