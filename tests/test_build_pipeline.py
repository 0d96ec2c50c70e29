"""The one build pipeline: `index` is a re-index of one shard into a plain directory, one place decides the
image model, and the reports keep their stage timings. Tiny random models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vitrina.encoders.config import EncoderConfig
from vitrina.engine.build.encode import model_specs
from vitrina.engine.build.indexing import build_index
from vitrina.engine.build.reindex import ReindexConfig, reindex
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import read_catalog, stream_catalog
from vitrina.index import IndexDirectory
from tests.helpers import demo_catalog, demo_rows, write_csv

pytestmark = pytest.mark.slow


def tiny_config(text_dir: Path, resnet: Path | None = None) -> VitrinaConfig:
    return VitrinaConfig(text_model=str(text_dir), image_model=f"resnet18={resnet}" if resnet else None, progress=False,
                         encoders=EncoderConfig(backend="torch"))


def test_index_is_a_reindex_of_one_shard_into_a_plain_directory(tmp_path, tiny_bert_dir, tiny_resnet_weights):
    rows = demo_rows()[:30]
    rows[4]["image"] = "images/missing.jpg"
    catalog = demo_catalog(tmp_path / "shop", [r for r in rows if r["image"] != "images/missing.jpg"])
    catalog = write_csv(catalog, rows)
    config = tiny_config(tiny_bert_dir, tiny_resnet_weights)
    plain = build_index(catalog, tmp_path / "plain", config)
    version = reindex(catalog, tmp_path / "root", config, ReindexConfig(shard_size=len(rows)))
    assert version.shards == 1
    a, b = IndexDirectory.load(plain.out), IndexDirectory.load(version.path)
    assert a.products.ids == b.products.ids and a.products.table.equals(b.products.table)
    for name in ("text", "image"):
        assert np.array_equal(np.asarray(a.spaces[name].vectors), np.asarray(b.spaces[name].vectors)), name
        assert np.array_equal(a.spaces[name].rows, b.spaces[name].rows), name
    assert plain.image_failures == version.failures and len(plain.image_failures) == 1
    x, y = dataclasses.asdict(a.manifest), dataclasses.asdict(b.manifest)
    assert x["catalog"] == y["catalog"] and x["product_count"] == y["product_count"] == 30
    assert {k: v for k, v in x["spaces"]["image"].items() if k != "tuning"} == \
        {k: v for k, v in y["spaces"]["image"].items() if k != "tuning"}
    assert a.content is None and b.content is not None  # a plain directory keeps no content to reuse
    assert list(plain.seconds) == ["read", "text", "lexical", "image"]  # the stages benchmarks/throughput.py reads
    assert list(version.seconds) == ["setup", "read_and_encode", "encode", "index", "publish", "total"]


def test_one_place_decides_whether_a_build_embeds_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = VitrinaConfig(image_model="efficientnet-lite0")
    with_images = [{"id": "1", "title": "Hat", "image": "a.jpg"}, {"id": "2", "title": "Cap", "image": None}]
    without = [{"id": "1", "title": "Hat", "image": None}]
    text_only = [{"id": "1", "title": "Hat"}]
    whole = read_catalog(with_images)
    assert model_specs(config, whole.fields, whole.products).image == "efficientnet-lite0"
    for name in ("none", "None", "NONE"):
        assert model_specs(dataclasses.replace(config, image_model=name), whole.fields, whole.products).image is None
    assert model_specs(dataclasses.replace(config, image_model=None), whole.fields).image is None
    assert model_specs(config, read_catalog(text_only).fields).image is None  # no image field
    empty = read_catalog(without)
    assert model_specs(config, empty.fields, empty.products).image is None  # no product names an image
    assert model_specs(config, stream_catalog(without).fields).image == "efficientnet-lite0"  # streamed: not known
