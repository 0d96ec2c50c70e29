"""The micro-batch's exact dense leg as one matrix product gives the hits FAISS Flat gives."""

from __future__ import annotations

import numpy as np
import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.search import SearchSession
from vitrina.index.dense_batch import MATMUL_MIN_BATCH, batch_search, matmul_top_k
from vitrina.index.product_index import ProductIndex
from vitrina.index.store import VectorSpace
from tests.helpers import demo_rows, write_csv


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 10, 300, 500])  # 300 and 500: more than the vectors, padded as FAISS pads
def test_matmul_top_k_gives_the_rows_and_scores_faiss_flat_gives(k):
    rng = np.random.default_rng(1)
    vectors, queries = unit(rng, 300), unit(rng, 33)
    rows = rng.permutation(1000)[:300].astype(np.int64)
    index = ProductIndex.build(vectors, rows, "Flat")
    want_scores, want_rows = index.search(queries, k)
    scores, found = matmul_top_k(queries, vectors, rows, k)
    assert np.array_equal(found, want_rows)  # random vectors: no ties
    assert np.allclose(scores[found >= 0], want_scores[want_rows >= 0], atol=1e-5)
    assert (found[:, 300:] == -1).all() and np.isneginf(scores[:, 300:]).all()


def test_matmul_top_k_breaks_ties_by_row_and_handles_no_vectors():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    scores, found = matmul_top_k(np.array([[1, 0]], np.float32), vectors, np.array([7, 3, 5]), 2)
    assert found.tolist() == [[3, 7]] and scores.tolist() == [[1.0, 1.0]]
    scores, found = matmul_top_k(np.ones((2, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 3)
    assert (found == -1).all() and np.isneginf(scores).all()


def test_batch_search_uses_the_product_only_where_it_is_exact_and_the_batch_large():
    rng = np.random.default_rng(2)
    vectors = unit(rng, 200)
    rows = np.arange(200, dtype=np.int64)
    flat = VectorSpace(ProductIndex.build(vectors, rows, "Flat"), vectors, rows)
    for size in (1, MATMUL_MIN_BATCH, 32):
        queries = unit(rng, size)
        assert np.array_equal(batch_search(flat, queries, 20)[1], flat.search(queries, 20)[1])
    # several vectors per product (max-pooled by FAISS's path): never the product
    multi_rows = np.repeat(np.arange(100, dtype=np.int64), 2)
    multi = VectorSpace(ProductIndex.build(vectors, multi_rows, "Flat"), vectors, multi_rows)
    queries = unit(rng, 32)
    got = batch_search(multi, queries, 10)[1]
    assert np.array_equal(got, multi.search(queries, 10)[1]) and all(len(set(r)) == 10 for r in got)


def test_session_dense_candidates_of_a_large_batch_equal_one_by_one(tmp_path):
    rows = [{"id": r["id"], "title": r["title"]} for r in demo_rows()[:120]]
    build_index(write_csv(tmp_path / "products.csv", rows), tmp_path / "idx", VitrinaConfig(progress=False))
    session = SearchSession(tmp_path / "idx", VitrinaConfig(progress=False))
    queries = ["blue shirt", "black watch", "leather wallet", "red dress", "running shoes", "sunglasses",
               "white sneakers", "denim jeans", "wool scarf", "handbag"]
    vectors = session.encode_queries(queries)
    batch = session.dense_candidates(vectors, "text", 100)
    for i in range(len(queries)):
        one = session.dense_candidates(vectors[i:i + 1], "text", 100)
        assert np.allclose(batch.scores[i], one.scores[0], atol=1e-5)  # the same ranking up to float ties:
        differ = batch.rows[i] != one.rows[0]  # rows swap only among equal scores (duplicate titles)
        assert set(batch.rows[i][differ]) == set(one.rows[0][differ])
        for row in batch.rows[i][differ]:
            assert one.scores[0][one.rows[0] == row][0] == pytest.approx(batch.scores[i][batch.rows[i] == row][0], abs=1e-5)
