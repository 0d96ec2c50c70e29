"""Building, re-indexing, upserting and deleting with data given in Python: records (dicts), pyarrow Tables,
pandas DataFrames and lists of ids; bad records change nothing on disk. Tiny random models."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vitrina.encoders.config import EncoderConfig
from vitrina.engine.build.indexing import build_index
from vitrina.engine.build.reindex import WORK_DIR, ReindexConfig, reindex
from vitrina.engine.build.updates import delete, upsert
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.engine.errors import CatalogError
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory, IndexManifest
from vitrina.index.versions import CURRENT, resolve_index_path
from vitrina.serving.app import create_app
from vitrina.serving.config import ServingConfig
from tests.helpers import DEMO_DATA, demo_rows, write_csv
from tests.serving_util import KEY

pytestmark = pytest.mark.slow


def tiny_config(text_dir: Path, resnet: Path | None = None, **catalog) -> VitrinaConfig:
    return VitrinaConfig(text_model=str(text_dir), image_model=f"resnet18={resnet}" if resnet else None, progress=False,
                         encoders=EncoderConfig(backend="torch"), catalog=CatalogConfig(**catalog))


def sku_rows(n: int = 12) -> list[dict]:
    """Demo products keyed by `sku`, their images named relative to the working directory."""
    return [{"sku": r["id"], "title": r["title"], "articleType": r["articleType"], "image": r["image"]}
            for r in demo_rows()[:n]]


@pytest.fixture
def shop(tmp_path, monkeypatch) -> Path:
    """A working directory holding the demo photos under images/ (where the records' relative paths point)."""
    (tmp_path / "images").mkdir()
    for r in demo_rows()[:14]:
        shutil.copy(DEMO_DATA / r["image"], tmp_path / r["image"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tree(path: Path) -> dict[str, int]:
    """Every file under `path` with its size and modification time (the lock file, opened by every writer, aside)."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_records_build_an_index_whose_images_are_served_from_the_working_directory(shop, tiny_bert_dir,
                                                                                     tiny_resnet_weights):
    config = tiny_config(tiny_bert_dir, tiny_resnet_weights, id_field="sku")
    rows = sku_rows()
    report = build_index(rows, shop / "idx", config)
    manifest = IndexManifest.load(shop / "idx")
    assert manifest.product_count == 12 and manifest.spaces["image"].count == 12 and not report.image_failures
    assert manifest.catalog["source"] == str(shop.resolve() / "<records>")
    assert manifest.catalog["image_roots"] == [str(shop.resolve())] and manifest.catalog["id_field"] == "sku"
    from_csv = build_index(write_csv(shop / "products.csv", rows), shop / "from-csv", config)
    a, b = IndexDirectory.load(report.out), IndexDirectory.load(from_csv.out)
    for name in ("text", "image"):  # the same products and vectors as the same rows in a CSV beside the photos
        assert np.array_equal(np.asarray(a.spaces[name].vectors), np.asarray(b.spaces[name].vectors)), name
    assert a.products.ids == b.products.ids
    other = shop / "elsewhere"
    other.mkdir()
    os.chdir(other)  # a server started from another folder still finds the photos
    with TestClient(create_app(shop / "idx", config, ServingConfig(api_key=KEY))) as client:
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        image = client.get(f"/products/{rows[0]['sku']}/image")
        assert image.status_code == 200 and image.content == (shop / rows[0]["image"]).read_bytes()


def test_a_dataframe_and_a_table_build_the_index_the_dicts_build(shop, tiny_bert_dir):
    pd = pytest.importorskip("pandas")
    import pyarrow as pa

    config = tiny_config(tiny_bert_dir, id_field="sku")
    rows = sku_rows()
    reference = IndexDirectory.load(build_index(rows, shop / "dicts", config).out)
    for name, given in (("frame", pd.DataFrame(rows)), ("table", pa.Table.from_pylist(rows))):
        built = IndexDirectory.load(build_index(given, shop / name, config).out)
        assert built.products.ids == reference.products.ids
        assert np.array_equal(np.asarray(built.spaces["text"].vectors), np.asarray(reference.spaces["text"].vectors))
        assert built.products.metadata(3) == reference.products.metadata(3)


def test_reindex_upsert_and_delete_take_records_and_ids(shop, tiny_bert_dir, tiny_resnet_weights):
    pd = pytest.importorskip("pandas")
    config = tiny_config(tiny_bert_dir, tiny_resnet_weights, id_field="sku")
    rows = sku_rows(14)
    root = shop / "root"
    first = reindex(rows[:12], root, config, ReindexConfig(shard_size=5))
    assert first.products == 12 and first.shards == 3 and first.encoded == {"text": 12, "image": 12}
    assert IndexManifest.load(first.path).catalog["source"] == str(shop.resolve() / "<records>")
    changes = pd.DataFrame([{**rows[0], "title": "Waterproof hiking boots for women"}, rows[12], rows[13]])
    update = upsert(root, changes, config)
    assert (update.added, update.updated, update.products) == (2, 1, 14)
    assert update.encoded == {"text": 3, "image": 2}  # the edited title and the two new products
    session = SearchSession(root, config)
    assert session.products.metadata(session.products.row_of(rows[0]["sku"]))["title"] == "Waterproof hiking boots for women"
    gone = delete(root, [rows[13]["sku"], f" {rows[1]['sku']} ", "no-such-product"], config)
    assert gone.deleted == 2 and gone.not_found == ["no-such-product"] and gone.products == 12
    session = SearchSession(root, config)
    assert rows[13]["sku"] not in session.products and rows[1]["sku"] not in session.products
    assert len(session.directory.spaces["image"].rows) == 12
    assert delete(root, iter(["no-such-product"]), config).deleted == 0  # an iterable of ids is fine too


def test_reindex_of_records_resumes_only_with_the_same_records(shop, tiny_bert_dir):
    config = tiny_config(tiny_bert_dir, id_field="sku")
    rows = sku_rows(12)
    root = shop / "root"

    def stop(stage: str, shard: int) -> None:
        if stage == "encode" and shard == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(rows, root, config, ReindexConfig(shard_size=4), on_stage=stop)
    assert len(list((root / WORK_DIR).glob("shard-*.npz"))) == 2
    edited = [dict(r) for r in rows]
    edited[0]["title"] = "Another title"
    with pytest.raises(CatalogError, match="cannot resume.*catalog_sha256"):
        reindex(edited, root, config, ReindexConfig(shard_size=4), resume=True)
    with pytest.raises(KeyboardInterrupt):  # the refused resume started nothing: interrupt a fresh run again
        reindex(rows, root, config, ReindexConfig(shard_size=4), on_stage=stop)
    resumed = reindex([dict(r) for r in rows], root, config, ReindexConfig(shard_size=4), resume=True)
    assert resumed.resumed_shards == 2 and resumed.shards == 3
    full = reindex(write_csv(shop / "products.csv", rows), shop / "full", config, ReindexConfig(shard_size=4))
    a, b = IndexDirectory.load(resumed.path), IndexDirectory.load(full.path)
    assert np.array_equal(np.asarray(a.spaces["text"].vectors), np.asarray(b.spaces["text"].vectors))


def test_bad_records_and_ids_are_clear_errors_that_change_nothing_on_disk(shop, tiny_bert_dir):
    config = tiny_config(tiny_bert_dir, id_field="sku")
    rows = sku_rows(8)
    build_index(rows, shop / "idx", config)
    reindex(rows, shop / "root", config)
    before = {name: tree(shop / name) for name in ("idx", "root")}
    live = resolve_index_path(shop / "root")
    late_bad = rows[:7] + [{"sku": "", "title": "no id"}]  # the last record is the bad one
    with pytest.raises(CatalogError, match=r"^records, record 7: field 'sku' \(the product id\) is missing or empty"):
        build_index(late_bad, shop / "idx", config)
    with pytest.raises(CatalogError, match=r"^records, record 7: field 'sku'"):
        reindex(late_bad, shop / "root", config)
    with pytest.raises(CatalogError, match=r"^records, record 1: expected a mapping"):
        upsert(shop / "root", [rows[0], "not a record"], config)
    with pytest.raises(CatalogError, match=r"^ids, item 1: a product id is a string, got int 7"):
        delete(shop / "root", [rows[0]["sku"], 7], config)
    with pytest.raises(CatalogError, match=r"^ids: no product ids"):
        delete(shop / "root", [], config)
    with pytest.raises(CatalogError, match=r"^ids: deleting every product would leave an empty index"):
        delete(shop / "root", [r["sku"] for r in rows], config)
    with pytest.raises(CatalogError, match="id file not found"):
        delete(shop / "root", "no-such-file.txt", config)  # a str names a file, as before
    assert {name: tree(shop / name) for name in ("idx", "root")} == before
    assert resolve_index_path(shop / "root") == live and (shop / "root" / CURRENT).is_symlink()
    assert not (shop / "root" / WORK_DIR).exists() and not (shop / "never").exists()
    with pytest.raises(CatalogError, match=r"^records, record 0: field names must be strings"):
        reindex([{"sku": "1", "title": "t", 3: "x"}], shop / "never", config)
    assert not (shop / "never").exists()
