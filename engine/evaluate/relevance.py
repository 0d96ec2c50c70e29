"""Ranking metrics for offline evaluation: nDCG, precision, recall, reciprocal rank and AP at k.

Ranked lists are sequences of product ids, best first; an id repeated later in a list counts only
at its first rank. Judgements are graded (`relevance`: id -> gain) or binary (a collection of
relevant ids; precision also takes a predicate). Ids without a judgement count as not relevant
(gain 0). A query with no relevant item scores 0 on every metric. Scores that tie are ranked by
`rank_by_score`, which breaks ties by id so that a ranking never depends on dictionary order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

Id = TypeVar("Id", bound=Hashable)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def rank_by_score(scores: Mapping[Id, float]) -> list[Id]:
    """Ids by descending score; equal scores in ascending id order (deterministic tie-breaking)."""
    return [pid for pid, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def _first_k(ranked_ids: Sequence[Id], k: int) -> list[Id]:
    """The first k distinct ids of a ranking."""
    seen: dict[Id, None] = {}
    for pid in ranked_ids:
        if len(seen) == k:
            break
        seen.setdefault(pid, None)
    return list(seen)


def dcg_at_k(gains: Iterable[float], k: int) -> float:
    """Discounted cumulative gain of the first k gains, given in rank order (rank 1 first).

    Linear gain: sum over ranks r <= k of gain_r / log2(r + 1).
    """
    _check_k(k)
    total = 0.0
    for rank, gain in enumerate(gains, start=1):
        if rank > k:
            break
        total += gain / math.log2(rank + 1)
    return total


def ndcg_at_k(ranked_ids: Sequence[Id], relevance: Mapping[Id, float], k: int) -> float:
    """DCG@k of the ranking divided by the ideal DCG@k of the query's judged items.

    The ideal ranking orders every judged item of the query by gain, whether or not the ranking
    retrieved it; unjudged retrieved items have gain 0. A query without any positive judgement
    scores 0.0.
    """
    _check_k(k)
    ideal = dcg_at_k(sorted((g for g in relevance.values() if g > 0), reverse=True), k)
    if ideal == 0.0:
        return 0.0
    return dcg_at_k((relevance.get(pid, 0.0) for pid in _first_k(ranked_ids, k)), k) / ideal


def precision_at_k(ranked_ids: Sequence[Id], relevant: Collection[Id] | Callable[[Id], bool], k: int) -> float:
    """Share of the first k ranks that hold a relevant item; the denominator is always k.

    `relevant` is a collection of relevant ids or a predicate on an id. A ranking shorter than k
    is not rewarded for its missing ranks.
    """
    _check_k(k)
    is_relevant = relevant if callable(relevant) else relevant.__contains__
    return sum(1 for pid in _first_k(ranked_ids, k) if is_relevant(pid)) / k


def recall_at_k(ranked_ids: Sequence[Id], relevant: Collection[Id], k: int) -> float:
    """Share of the relevant items found in the first k ranks."""
    _check_k(k)
    if not relevant:
        return 0.0
    return sum(1 for pid in _first_k(ranked_ids, k) if pid in relevant) / len(relevant)


def reciprocal_rank_at_k(ranked_ids: Sequence[Id], relevant: Collection[Id], k: int) -> float:
    """1 / rank of the first relevant item within the first k ranks, else 0 (averaged: MRR@k)."""
    _check_k(k)
    for rank, pid in enumerate(_first_k(ranked_ids, k), start=1):
        if pid in relevant:
            return 1.0 / rank
    return 0.0


def average_precision_at_k(ranked_ids: Sequence[Id], relevant: Collection[Id], k: int) -> float:
    """AP@k: the mean of precision@r over the ranks r <= k that hold a relevant item, divided by
    min(k, number of relevant items) so that a perfect top k scores 1 (averaged: mAP@k)."""
    _check_k(k)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, pid in enumerate(_first_k(ranked_ids, k), start=1):
        if pid in relevant:
            hits += 1
            total += hits / rank
    return total / min(k, len(relevant))


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; raises ValueError on no values rather than inventing a score."""
    total, count = 0.0, 0
    for value in values:
        total += value
        count += 1
    if count == 0:
        raise ValueError("mean of no values")
    return total / count
