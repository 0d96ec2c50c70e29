"""Choosing an approximate index's search effort (IVF nprobe, HNSW efSearch) for a target recall.

The smallest setting whose recall@k against exact search reaches the target wins: searches are as
fast as the recall allows. Queries are catalog vectors with noise added (a query is never exactly a
product), answered exactly by brute force over all vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

from vitrina.index.errors import IndexStoreError
from vitrina.index.product_index import ProductIndex

LADDERS = {
    "nprobe": (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096),
    "efSearch": (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048),
}
QUERY_NOISE = 0.05  # per-dimension noise (before re-normalising) of the sample queries, relative to 1/sqrt(d)


@dataclass(frozen=True)
class Tuning:
    """The chosen search setting and the recall it measured."""

    parameter: str  # "nprobe" or "efSearch"
    value: int
    recall: float  # recall@k against exact search at `value`
    target: float
    k: int
    queries: int

    @property
    def reached(self) -> bool:
        return self.recall >= self.target

    def to_json(self) -> dict:
        return asdict(self)


def sample_queries(vectors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` normalised queries near catalog vectors (each a random vector plus noise)."""
    rng = np.random.default_rng(seed)
    n, dim = vectors.shape
    picked = np.asarray(vectors[np.sort(rng.choice(n, min(count, n), replace=False))], dtype=np.float32)
    noisy = picked + rng.normal(0.0, QUERY_NOISE * 4.0 / np.sqrt(dim), picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def exact_neighbours(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The product rows of each query's exact top-k by inner product (brute force, in blocks)."""
    _, positions = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32),
                             np.ascontiguousarray(vectors, dtype=np.float32), k, metric=faiss.METRIC_INNER_PRODUCT)
    return np.where(positions >= 0, np.asarray(rows)[np.maximum(positions, 0)], -1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k that was found."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / k for f, t in zip(found, truth)]))


def tune_search(index: ProductIndex, vectors: np.ndarray, rows: np.ndarray, target: float = 0.95, k: int = 10,
                queries: int = 500, seed: int = 0) -> Tuning | None:
    """Set `index` to the smallest nprobe/efSearch reaching `target` recall@k and return the choice;
    None for exact indexes (nothing to tune). When no setting reaches the target, the largest tried
    stays set and the result says so (`reached` False)."""
    parameter = index.tunable_parameter
    if parameter is None:
        return None
    if not 0.0 < target <= 1.0:
        raise IndexStoreError(f"the target recall must be in (0, 1], got {target}")
    if len(vectors) <= k:
        raise IndexStoreError(f"tuning needs more than k={k} vectors, the index has {len(vectors)}")
    sample = sample_queries(vectors, queries, seed)
    truth = exact_neighbours(sample, vectors, rows, k)
    ladder = [v for v in LADDERS[parameter] if v <= index.parameter_limit(parameter)] or [index.parameter_limit(parameter)]
    best = None
    for value in ladder:
        index.set_search_parameter(parameter, value)
        recall = recall_at_k(index.search(sample, k)[1], truth)
        best = Tuning(parameter, value, round(recall, 4), target, k, len(sample))
        if best.reached:
            break
    return best
