"""ProductIndex over FAISS, index manifests, and index directories that never lose data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import (
    IndexConfig,
    IndexDirectory,
    IndexManifest,
    IndexStoreError,
    ProductIndex,
    ProductTable,
    SpaceInfo,
    VectorSpace,
    default_factory,
)


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF32,Flat"])
def test_index_types_agree_with_brute_force(factory):
    x, q = unit_vectors(4000, 24), unit_vectors(50, 24, seed=1)
    rows = np.arange(4000, dtype=np.int64) * 3 + 5  # ids need not be positions
    index = ProductIndex.build(x, rows, factory, IndexConfig(hnsw_ef_search=256, ivf_nprobe=32))
    scores, found = index.search(q, 10)
    expected = rows[brute_force(x, q, 10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected)])
    assert recall >= (1.0 if factory == "Flat" else 0.9)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert index.factory == factory and index.ntotal == 4000 and index.dim == 24 and not index.on_gpu


def test_fewer_vectors_than_k_pads_with_minus_one():
    index = ProductIndex.build(unit_vectors(3, 8), np.array([0, 1, 2]))
    _, rows = index.search(unit_vectors(1, 8), 5)
    assert sorted(rows[0][:3]) == [0, 1, 2] and list(rows[0][3:]) == [-1, -1]


def test_default_factory_by_catalog_size():
    assert default_factory(8_000, 384) == "Flat"
    assert default_factory(500_000, 384) == "HNSW32"
    assert default_factory(10_000_000, 384).startswith("IVF") and ",PQ48" in default_factory(10_000_000, 384)


def test_bad_factory_and_untrainable_index_fail_clearly():
    with pytest.raises(IndexStoreError, match="cannot build index type 'NotAType'"):
        ProductIndex.build(unit_vectors(10, 8), np.arange(10), "NotAType")
    with pytest.raises(IndexStoreError, match="needs at least 1024 vectors.*Flat"):
        ProductIndex.build(unit_vectors(100, 8), np.arange(100), "IVF1024,Flat")
    index = ProductIndex.build(unit_vectors(10, 8), np.arange(10))
    with pytest.raises(IndexStoreError, match="8-d"):
        index.search(unit_vectors(1, 16), 3)


def _directory(n: int = 20, dim: int = 8, encoder: str = "enc@1") -> IndexDirectory:
    x = unit_vectors(n, dim)
    rows = np.arange(n, dtype=np.int64)
    manifest = IndexManifest(
        product_count=n,
        catalog={"source": "c.csv", "id_field": "id", "text_fields": ["title"], "image_field": None},
        spaces={"text": SpaceInfo(encoder=encoder, model="spec", dim=dim, count=n, factory="Flat")},
    )
    products = ProductTable.from_records([f"p{i}" for i in range(n)], [{"title": f"t{i}", "price": float(i)} for i in range(n)])
    return IndexDirectory(manifest, products, {"text": VectorSpace(ProductIndex.build(x, rows), x, rows)})


def test_directory_round_trip(tmp_path):
    original = _directory()
    original.save(tmp_path / "idx")
    loaded = IndexDirectory.load(tmp_path / "idx")
    assert loaded.manifest.spaces["text"].encoder == "enc@1"
    assert loaded.products.ids[3] == "p3" and loaded.products.metadata(3) == {"title": "t3", "price": 3.0}
    q = np.asarray(original.spaces["text"].vectors[:2])
    np.testing.assert_array_equal(loaded.spaces["text"].index.search(q, 5)[1], original.spaces["text"].index.search(q, 5)[1])
    np.testing.assert_allclose(loaded.spaces["text"].vector_of_row(4), original.spaces["text"].vectors[4])


def test_manifest_refuses_a_different_encoder(tmp_path):
    _directory(encoder="model-a@1").save(tmp_path / "idx")
    manifest = IndexManifest.load(tmp_path / "idx")
    manifest.check_encoder("text", "model-a@1", 8)
    with pytest.raises(IndexStoreError, match="made by model-a@1 \\(8-d\\).*model-b@2 \\(8-d\\)"):
        manifest.check_encoder("text", "model-b@2", 8)
    with pytest.raises(IndexStoreError, match="no image vectors"):
        manifest.check_encoder("image", "model-a@1", 8)


def test_manifest_format_and_damage_are_reported(tmp_path):
    _directory().save(tmp_path / "idx")
    path = tmp_path / "idx" / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(IndexStoreError, match="format 99"):
        IndexDirectory.load(tmp_path / "idx")
    path.write_text("{not json")
    with pytest.raises(IndexStoreError, match="damaged"):
        IndexDirectory.load(tmp_path / "idx")
    with pytest.raises(IndexStoreError, match="not a Vitrina index"):
        IndexDirectory.load(tmp_path)


def test_failed_save_keeps_the_previous_index(tmp_path, monkeypatch):
    out = tmp_path / "idx"
    _directory(n=20).save(out)
    replacement = _directory(n=30)

    def explode(path):
        raise OSError("disk full")

    monkeypatch.setattr(replacement.products, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        replacement.save(out)
    assert IndexDirectory.load(out).manifest.product_count == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temp directories left behind


def test_save_replaces_an_index_but_never_a_foreign_directory(tmp_path):
    out = tmp_path / "idx"
    _directory(n=20).save(out)
    _directory(n=30).save(out)
    assert IndexDirectory.load(out).manifest.product_count == 30
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(IndexStoreError, match="not a Vitrina index; refusing"):
        _directory().save(foreign)
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_model_specs_with_local_paths_are_stored_absolute(tmp_path, monkeypatch):
    from engine.indexing import absolute_spec

    (tmp_path / "clipdir").mkdir()
    (tmp_path / "resnet50").mkdir()  # a folder named like a built-in model does not shadow it
    (tmp_path / "w.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("clip:clipdir") == f"clip:{tmp_path / 'clipdir'}"
    assert absolute_spec("resnet50=w.pth") == f"resnet50={tmp_path / 'w.pth'}"
    assert absolute_spec("clip:ViT-B-32=laion2b_s34b_b79k") == "clip:ViT-B-32=laion2b_s34b_b79k"
    assert absolute_spec("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert absolute_spec("resnet50") == "resnet50"
