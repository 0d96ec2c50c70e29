"""Hybrid retrieval: merge the ranked candidates of a lexical and a dense index into one ranking.

Two methods, both over (scores, rows) arrays of shape (queries, candidates), rows -1 for padding:
- reciprocal rank fusion (RRF): score = sum over lists of weight / (rrf_k + rank), ranks from 1;
- score blend: each list's scores min-max normalised per query to [0, 1], then
  (1 - dense_weight) * lexical + dense_weight * dense; a product missing from a list gets 0 there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FUSION_METHODS = ("blend", "rrf")


@dataclass(frozen=True)
class HybridSettings:
    """How `--mode hybrid` merges lexical and dense candidates (defaults measured in benchmarks/RESULTS.md)."""

    method: str = "blend"
    dense_weight: float = 0.4
    rrf_k: int = 60
    candidates: int = 100  # taken from each index per query before fusing

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; choose one of {', '.join(FUSION_METHODS)}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be between 0 and 1, got {self.dense_weight}")
        if self.rrf_k < 0 or self.candidates < 1:
            raise ValueError("rrf_k must be >= 0 and candidates >= 1")


def _minmax(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-row min-max scaling over the valid entries; a single valid entry (or all equal) scales to 1."""
    valid = rows >= 0
    scores = np.asarray(scores, dtype=np.float64)
    lo = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)  # rows with no candidates
    span = hi - lo
    scaled = np.where(span > 0, (np.where(valid, scores, lo) - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, scaled, 0.0)


def _merge(rows_lists: list[np.ndarray], score_lists: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    n = rows_lists[0].shape[0]
    out_scores = np.zeros((n, k), dtype=np.float32)
    out_rows = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        rows = np.concatenate([r[i] for r in rows_lists])
        scores = np.concatenate([s[i] for s in score_lists])
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        if not len(rows):
            continue
        unique, inverse = np.unique(rows, return_inverse=True)
        totals = np.zeros(len(unique), dtype=np.float64)
        np.add.at(totals, inverse, scores)
        order = np.lexsort((unique, -totals))[:k]  # best total first; ties by row, so results are stable
        out_scores[i, : len(order)] = totals[order]
        out_rows[i, : len(order)] = unique[order]
    return out_scores, out_rows


def reciprocal_rank_fusion(
    results: list[tuple[np.ndarray, np.ndarray]], k: int, rrf_k: int = 60, weights: list[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """RRF over any number of (scores, rows) result lists; the input scores are ignored, only ranks count."""
    weights = weights or [1.0] * len(results)
    rows_lists, score_lists = [], []
    for (_, rows), weight in zip(results, weights):
        ranks = np.arange(1, rows.shape[1] + 1, dtype=np.float64)
        rows_lists.append(rows)
        score_lists.append(np.where(rows >= 0, weight / (rrf_k + ranks), 0.0))
    return _merge(rows_lists, score_lists, k)


def score_blend(
    lexical: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray], k: int, dense_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of per-query min-max normalised lexical and dense scores."""
    lex_scores, lex_rows = lexical
    dense_scores, dense_rows = dense
    return _merge(
        [lex_rows, dense_rows],
        [(1.0 - dense_weight) * _minmax(lex_scores, lex_rows), dense_weight * _minmax(dense_scores, dense_rows)],
        k,
    )


def fuse(
    lexical: tuple[np.ndarray, np.ndarray], dense: tuple[np.ndarray, np.ndarray], k: int, settings: HybridSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid top-k by the method `settings` names."""
    if settings.method == "rrf":  # dense_weight 0.5 is plain (unweighted) RRF
        weights = [1.0 - settings.dense_weight, settings.dense_weight]
        return reciprocal_rank_fusion([lexical, dense], k, settings.rrf_k, weights)
    return score_blend(lexical, dense, k, settings.dense_weight)
