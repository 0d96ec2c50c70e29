"""ProductIndex over FAISS, index manifests, and index directories that never lose data."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from vitrina.index import (
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
    assert default_factory(54_667, 384) == "HNSW32"  # Home Depot: exact search would not fit 100 req/s on 2 cores
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
    from vitrina.engine.build.encode import absolute_spec

    (tmp_path / "clipdir").mkdir()
    (tmp_path / "resnet50").mkdir()  # a folder named like a built-in model does not shadow it
    (tmp_path / "w.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("clip:clipdir") == f"clip:{tmp_path / 'clipdir'}"
    assert absolute_spec("resnet50=w.pth") == f"resnet50={tmp_path / 'w.pth'}"
    assert absolute_spec("clip:ViT-B-32=laion2b_s34b_b79k") == "clip:ViT-B-32=laion2b_s34b_b79k"
    assert absolute_spec("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert absolute_spec("resnet50") == "resnet50"


def test_search_threads_apply_in_every_thread():
    """OpenMP keeps its thread count per thread: a server's pool threads must get the setting too,
    or FAISS spins every core in each of them."""
    import threading

    import faiss

    from vitrina.index.product_index import set_search_threads

    before = faiss.omp_get_max_threads()
    index = ProductIndex.build(unit_vectors(200, 16), np.arange(200, dtype=np.int64), "Flat")
    seen: list[int] = []

    def search_in_a_new_thread() -> None:
        index.search(unit_vectors(1, 16, seed=1), 5)
        seen.append(faiss.omp_get_max_threads())

    try:
        set_search_threads(1)
        worker = threading.Thread(target=search_in_a_new_thread)
        worker.start()
        worker.join()
    finally:
        set_search_threads(before)
    assert seen == [1]


def clustered_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Normalised vectors around 50 centres: the structure IVF and HNSW are built for."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d))
    x = centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory, parameter", [("IVF64,Flat", "nprobe"), ("HNSW16", "efSearch")])
def test_search_effort_is_tuned_to_the_target_recall_and_kept_in_the_manifest(tmp_path, factory, parameter):
    from vitrina.index.tuning import exact_neighbours, recall_at_k, sample_queries, tune_search

    x = clustered_vectors(6000, 32)
    rows = np.arange(len(x), dtype=np.int64)
    index = ProductIndex.build(x, rows, factory)
    tuned = tune_search(index, x, rows, target=0.9, k=10, queries=300)
    assert tuned.parameter == parameter and tuned.reached and tuned.recall >= 0.9
    # independent check on other queries, at the chosen setting
    queries = sample_queries(x, 300, seed=7)
    assert recall_at_k(index.search(queries, 10)[1], exact_neighbours(queries, x, rows, 10)) >= 0.85
    # the smallest setting that reaches the target: one step down misses it (unless it is the first)
    from vitrina.index.tuning import LADDERS

    ladder = LADDERS[parameter]
    if tuned.value != ladder[0]:
        index.set_search_parameter(parameter, ladder[ladder.index(tuned.value) - 1])
        sample = sample_queries(x, 300)
        assert recall_at_k(index.search(sample, 10)[1], exact_neighbours(sample, x, rows, 10)) < 0.9
    # recorded in the manifest, applied when the directory is loaded again
    index.set_search_parameter(parameter, tuned.value)
    info = SpaceInfo(encoder="e", model="m", dim=32, count=len(x), factory=factory, tuning=tuned.to_json())
    manifest = IndexManifest(product_count=len(x), catalog={}, spaces={"text": info})
    table = ProductTable.from_records([str(r) for r in rows], [{} for _ in rows])
    IndexDirectory(manifest, table, {"text": VectorSpace(index, x, rows)}).save(tmp_path / "idx")
    loaded = IndexDirectory.load(tmp_path / "idx")
    assert loaded.spaces["text"].index.search_params[parameter] == tuned.value
    assert loaded.manifest.spaces["text"].tuning["recall"] == tuned.recall
    # an explicit setting in the config wins over the tuned one
    override = IndexConfig(ivf_nprobe=3, hnsw_ef_search=300)
    again = IndexDirectory.load(tmp_path / "idx", override)
    assert again.spaces["text"].index.search_params[parameter] == (3 if parameter == "nprobe" else 300)


def test_exact_indexes_need_no_tuning():
    from vitrina.index.tuning import tune_search

    x = clustered_vectors(500, 16)
    assert tune_search(ProductIndex.build(x, np.arange(500, dtype=np.int64), "Flat"), x, np.arange(500)) is None


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "IVF32,PQ8", "HNSW16"])
def test_refilled_index_keeps_its_training_and_holds_exactly_the_new_vectors(factory):
    x = clustered_vectors(4000, 32)
    index = ProductIndex.build(x[:3000], np.arange(3000, dtype=np.int64), factory)
    rows = np.arange(2000, 4000, dtype=np.int64)[::-1].copy()  # some removed, some new, another order
    refilled = index.refilled(x[2000:4000][::-1], rows)
    assert refilled.ntotal == 2000 and refilled.factory == factory
    found = refilled.search(x[2500:2520], 1)[1][:, 0]
    assert (found == np.arange(2500, 2520)).mean() >= 0.9  # each vector finds itself under its new row
    assert refilled.search(x[:20], 10)[1].min() >= 2000  # removed rows are gone
    if "IVF" in factory:  # same centroids: trained once, not again
        old, new = (faiss.extract_index_ivf(i._base) for i in (index, refilled))
        assert np.array_equal(old.quantizer.reconstruct_n(0, old.nlist), new.quantizer.reconstruct_n(0, new.nlist))


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "HNSW16"])
def test_memory_mapped_loading_answers_like_a_normal_load(tmp_path, factory):
    x = clustered_vectors(3000, 32)
    rows = np.arange(3000, dtype=np.int64)
    ProductIndex.build(x, rows, factory).save(tmp_path / "i.faiss")
    read = ProductIndex.load(tmp_path / "i.faiss", factory, IndexConfig(mmap=False))
    mapped = ProductIndex.load(tmp_path / "i.faiss", factory, IndexConfig(mmap=True))
    assert np.array_equal(read.search(x[:20], 5)[1], mapped.search(x[:20], 5)[1])
