"""Exact inner-product top-k of a batch of queries as one BLAS matrix product over the stored vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vitrina.index.store import VectorSpace


def matmul_top_k(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int,
                 pad: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query over `vectors` (keyed by `rows`): one matrix product and an argpartition,
    best first, equal scores by row; padded with `pad` / -1 past the number of vectors (as FAISS pads)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores = np.full((len(queries), k), pad, dtype=np.float32)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    take = min(k, len(vectors))
    if take == 0 or not len(queries):
        return scores, found
    sims = queries @ np.asarray(vectors, dtype=np.float32).T  # (queries, vectors), one sgemm
    top = np.argpartition(-sims, take - 1, axis=1)[:, :take] if take < sims.shape[1] else np.tile(np.arange(take), (len(queries), 1))
    top_sims = np.take_along_axis(sims, top, axis=1)
    top_rows = np.asarray(rows)[top]
    for i in range(len(queries)):
        order = np.lexsort((top_rows[i], -top_sims[i]))
        scores[i, :take], found[i, :take] = top_sims[i, order], top_rows[i, order]
    return scores, found


def set_blas_threads(threads: int | None) -> None:
    """BLAS threads of the batch matrix product (numpy's OpenBLAS), in the whole process; None leaves BLAS's default.
    A server wants 1: OpenBLAS's helper threads spin after each product and take a core from the requests in flight."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


MATMUL_MIN_BATCH = 8  # from this many queries a BLAS product beats FAISS Flat (benchmarks/dense_batch.py)


def batch_search(space: "VectorSpace", queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The unfiltered top-k of `space.search` for a batch of queries: one matrix product over the stored vectors
    where the index is exact, holds one vector per product and the batch has MATMUL_MIN_BATCH queries or more;
    else FAISS."""
    if len(queries) >= MATMUL_MIN_BATCH and space.index.is_exact and not space.multi:
        return matmul_top_k(queries, space.vectors, space.rows, k)
    return space.search(queries, k)
