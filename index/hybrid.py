"""Hybrid retrieval: merge the ranked candidates of a lexical and a dense index into one ranking.

Two methods, both over (scores, rows) arrays of shape (queries, candidates), rows -1 for padding:
- reciprocal rank fusion (RRF): score = sum over lists of weight / (rrf_k + rank), ranks from 1;
- score blend: over the union of both lists' candidates, each side's scores min-max normalised per
  query to [0, 1], then (1 - dense_weight) * lexical + dense_weight * dense. With rescorers, a
  candidate found by one side only gets its real score from the other (its BM25 score, its cosine);
  without, it counts as that side's lowest. Real scores lift Home Depot nDCG@10 by about 1.7% on the
  tune split (benchmarks/RESULTS.md). With a coverage rescorer, coverage_weight times the share of
  the query's words each candidate holds is added: products holding every word of the query come
  first, and BM25 and the cosine order them. On Home Depot this lifts test nDCG@10 by a further 2.6%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Rescorer = Callable[[int, np.ndarray], np.ndarray]  # (query number, candidate rows) -> their scores, NaN if none

FUSION_METHODS = ("blend", "rrf")


@dataclass(frozen=True)
class HybridConfig:
    """How `--mode hybrid` merges lexical and dense candidates (defaults measured in benchmarks/RESULTS.md)."""

    method: str = "blend"
    dense_weight: float = 0.7
    coverage_weight: float = 1.5  # added weight of the share of query words a product holds (blend only)
    rrf_k: int = 60
    candidates: int = 100  # taken from each index per query before fusing

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; choose one of {', '.join(FUSION_METHODS)}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ValueError(f"dense_weight must be between 0 and 1, got {self.dense_weight}")
        if not 0.0 <= self.coverage_weight < float("inf"):
            raise ValueError(f"coverage_weight must be a finite number >= 0, got {self.coverage_weight}")
        if self.rrf_k < 0 or self.candidates < 1:
            raise ValueError("rrf_k must be >= 0 and candidates >= 1")


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of a 1-d array (sorted, each value once), without np.unique's check for masked arrays, which
    imports numpy.ma (tens of milliseconds of a fresh search)."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


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
    lexical: tuple[np.ndarray, np.ndarray],
    dense: tuple[np.ndarray, np.ndarray],
    k: int,
    dense_weight: float,
    lexical_rescorer: Rescorer | None = None,
    dense_rescorer: Rescorer | None = None,
    coverage: Rescorer | None = None,
    coverage_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of per-query min-max normalised lexical and dense scores over both lists' candidates,
    plus coverage_weight times each candidate's `coverage` (share of the query's words, 0 to 1)."""
    n = lexical[1].shape[0]
    out_scores = np.zeros((n, k), dtype=np.float32)
    out_rows = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        sides = [(lexical[0][i], lexical[1][i], lexical_rescorer), (dense[0][i], dense[1][i], dense_rescorer)]
        union = sorted_unique(np.concatenate([rows[rows >= 0] for _, rows, _ in sides]))
        if not len(union):
            continue
        normalised = [_side_scores(union, scores, rows, rescorer, i) for scores, rows, rescorer in sides]
        total = (1.0 - dense_weight) * normalised[0] + dense_weight * normalised[1]
        if coverage is not None and coverage_weight:
            total = total + coverage_weight * np.asarray(coverage(i, union), dtype=np.float64)
        order = np.lexsort((union, -total))[:k]  # best total first; ties by row, so results are stable
        out_scores[i, : len(order)] = total[order]
        out_rows[i, : len(order)] = union[order]
    return out_scores, out_rows


def _side_scores(union: np.ndarray, scores: np.ndarray, rows: np.ndarray, rescorer: Rescorer | None, query: int) -> np.ndarray:
    """One side's scores of the `union` candidates, min-max scaled; unknown ones count as the lowest."""
    if rescorer is not None:
        values = np.asarray(rescorer(query, union), dtype=np.float64)
    else:
        valid = rows >= 0
        lookup = dict(zip(rows[valid].tolist(), np.asarray(scores[valid], dtype=np.float64).tolist()))
        values = np.array([lookup.get(int(r), np.nan) for r in union], dtype=np.float64)
    return min_max_scaled(values)


def min_max_scaled(values: np.ndarray) -> np.ndarray:
    """Values min-max scaled to [0, 1] over the known ones (all 1 when they are equal); NaN (unknown) -> 0."""
    values = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(values)
    if not known.any():
        return np.zeros(len(values))
    lo, hi = values[known].min(), values[known].max()
    scaled = (values - lo) / (hi - lo) if hi > lo else np.ones(len(values))
    return np.where(known, scaled, 0.0)


def fuse(
    lexical: tuple[np.ndarray, np.ndarray],
    dense: tuple[np.ndarray, np.ndarray],
    k: int,
    settings: HybridConfig,
    lexical_rescorer: Rescorer | None = None,
    dense_rescorer: Rescorer | None = None,
    coverage: Rescorer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hybrid top-k by the method `settings` names (rescorers serve the blend; RRF uses ranks only)."""
    if settings.method == "rrf":  # dense_weight 0.5 is plain (unweighted) RRF
        weights = [1.0 - settings.dense_weight, settings.dense_weight]
        return reciprocal_rank_fusion([lexical, dense], k, settings.rrf_k, weights)
    return score_blend(lexical, dense, k, settings.dense_weight, lexical_rescorer, dense_rescorer,
                       coverage, settings.coverage_weight)
