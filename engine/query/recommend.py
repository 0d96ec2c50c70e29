"""`vitrina recommend`: products for a shopper from what they bought, what it resembles, and what sells.

A known shopper's score for a product blends three parts, each scaled to [0, 1]:
- content affinity: how close the product sits to the shopper's own products in the index's product
  space (fused once `vitrina train` ran, so words, pictures and co-purchases count; else text). Each
  past product counts by recency (a half-life in days before the newest event), and similarities are
  raised to `sharpness` before averaging, so one close match outweighs many loose ones. This is what
  reaches products nobody has bought yet (new arrivals, other colours of a favourite);
- behaviour affinity: the cosine (or dot product, `BehaviourConfig.scoring`) of the shopper's and the
  product's ALS vectors (products without events get none);
- popularity: log(1 + shoppers of the product), scaled by the best seller's (`RecommendConfig`:
  or by summed event weight, and decayed by age).
With `include_seen`, the shopper's own products are candidates too and add a re-buy score (how often
and how recently they bought each; `repurchase`): half of a wholesaler's next purchases are re-buys.
By default the shop's own log decides (`includes_seen`): own products are in when 2% or more of its
events come back to a product the shopper had a day or more before (Online Retail 28%, H&M 5%).
Candidates are the nearest neighbours of the shopper's recent products (FAISS), the best sellers
and the behaviour model's top products; only they are scored. An unknown shopper gets the best
sellers. The defaults were chosen on H&M purchases (benchmarks/RESULTS.md, `recommend.py`).
"""

from __future__ import annotations

import numpy as np

from vitrina.engine.learn.behaviour import BehaviourModel
from vitrina.engine.config import RecommendConfig
from vitrina.engine.query.personalise import load_behaviour
from vitrina.engine.query.search import SearchHit, SearchSession, check_k
from vitrina.engine.query.variants import grouped_top


def popularity(model: BehaviourModel, settings: RecommendConfig = RecommendConfig()) -> np.ndarray:
    """log(1 + shoppers) per product row (or of the summed event weight, each pair decayed by the age of
    its last event, as `settings` say), scaled to [0, 1]."""
    if settings.popularity_by == "shoppers" and settings.popularity_half_life_days is None:
        counts = np.log1p(model.shoppers_per_product)
    else:
        pairs = model.interactions.tocoo()
        amount = pairs.data.astype(np.float64) if settings.popularity_by == "weight" else np.ones(pairs.nnz)
        if settings.popularity_half_life_days is not None and model.last_seen is not None:
            seen = np.asarray(model.last_seen[pairs.row, pairs.col]).ravel()
            age = np.maximum(model.latest - seen, 0.0) / 86_400.0
            amount = amount * 0.5 ** (age / settings.popularity_half_life_days)
        counts = np.log1p(np.bincount(pairs.col, weights=np.maximum(amount, 0.0), minlength=model.n_products))
    return counts / counts.max() if counts.max() > 0 else counts


def includes_seen(model: BehaviourModel, settings: RecommendConfig, include_seen: bool | None = None) -> bool:
    """Whether the shopper's own products are recommended: `include_seen`, else `settings.include_seen`,
    else whether the shop's customers re-buy (`model.repeat_share` >= `settings.seen_share`)."""
    for choice in (include_seen, settings.include_seen):
        if choice is not None:
            return bool(choice)
    share = model.repeat_share
    return share is not None and share >= settings.seen_share


def behaviour_affinity(model: BehaviourModel, user: str) -> np.ndarray | None:
    """Per product row, the user's ALS affinity in [0, 1] (0 where a product has no vector): (cosine + 1) / 2,
    or the dot product scaled by the user's lowest and highest (`model.settings.scoring`); None without a vector."""
    user_vector = model.user_vector(user)
    if user_vector is None:
        return None
    if model.settings.scoring == "dot":
        raw = model.item_factors @ model.user_factors[model.user_index[str(user)]]
        has = model.has_vector
        lo, hi = (float(raw[has].min()), float(raw[has].max())) if has.any() else (0.0, 0.0)
        return np.where(has, (raw - lo) / (hi - lo if hi > lo else 1.0), 0.0)
    return np.where(model.has_vector, (model.item_vectors() @ user_vector + 1.0) / 2.0, 0.0)


def recency_weights(age_days: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """Each past product's weight by its age: 1 for the newest, halving every `half_life_days` after it.

    Ages count from the shopper's own newest product, so the weights never all underflow to zero
    (an old history, or one event dated far after the rest, still leaves the newest product at 1).
    """
    age = np.nan_to_num(np.asarray(age_days, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if half_life_days is None or not len(age):
        return np.ones(len(age))
    return 0.5 ** ((age - age.min()) / half_life_days)


def repurchase(model: BehaviourModel, user: str, settings: RecommendConfig) -> tuple[np.ndarray, np.ndarray]:
    """(the user's product rows, their re-buy score in [0, 1]): summed event weight ^ count power, halving
    every re-buy half-life since the pair's last event, scaled by the user's highest."""
    rows, age = model.history(user)
    if not len(rows):
        return rows, np.zeros(0)
    i = model.user_index[str(user)]
    weight = np.asarray(model.interactions[i, rows].todense(), dtype=np.float64).ravel()
    score = np.maximum(weight, 0.0) ** settings.rebuy_count_power
    if settings.rebuy_half_life_days is not None:
        score = score * 0.5 ** (np.maximum(np.nan_to_num(age), 0.0) / settings.rebuy_half_life_days)
    top = score.max()
    return rows, score / top if top > 0 else score


def best_sellers(popular: np.ndarray, n: int) -> np.ndarray:
    """The n most popular product rows, ties by row."""
    return np.argsort(-popular, kind="stable")[:n]


def recommend(session: SearchSession, user: str, k: int = 10, include_seen: bool | None = None,
              settings: RecommendConfig = RecommendConfig(), model: BehaviourModel | None = None,
              popular: np.ndarray | None = None) -> tuple[list[SearchHit], bool]:
    """Top-k products for `user`, and whether they are personalised (an unknown user gets the best sellers).

    include_seen: None lets `settings` and the shop's log decide (`includes_seen`).
    model / popular: the index's behaviour model and its `popularity`, when the caller keeps them
    loaded (a server); else they are read from the index directory.
    """
    check_k(k)
    model = model or load_behaviour(session)
    popular = popularity(model, settings) if popular is None else popular
    include_seen = includes_seen(model, settings, include_seen)
    if str(user) not in model.user_index:
        if session.groups is not None:  # one hit per product group
            top = best_sellers(popular, len(popular))
            return grouped_top(session, popular[top], top, k, model.has_vector[top]), False
        top = best_sellers(popular, k)
        top = top[model.has_vector[top]]
        return session.hits(popular[top], top), False
    rows, scores = score_for_user(session, model, str(user), settings, popular, include_seen)
    if session.groups is not None:  # one hit per product group
        return grouped_top(session, scores, rows, k), True
    order = np.lexsort((rows, -scores))[:k]
    return session.hits(scores[order], rows[order]), True


def score_for_user(session: SearchSession, model: BehaviourModel, user: str, settings: RecommendConfig,
                   popular: np.ndarray, include_seen: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(candidate product rows, their blended scores) for a known user; without the user's own products
    unless `include_seen`."""
    history, age = model.history(user)
    recent = np.argsort(age, kind="stable")[: settings.history]
    rows, age = history[recent], age[recent]
    weights = recency_weights(age, settings.half_life_days)
    space = session.directory.spaces[session.default_space()]
    past, found = space.vectors_of_rows(rows)
    weights = weights[found]

    candidates = [best_sellers(popular, settings.best_sellers)]
    behaviour = np.zeros(model.n_products)
    affinity = behaviour_affinity(model, user) if settings.behaviour_weight > 0 else None  # only then worth it
    if affinity is not None:
        behaviour = affinity
        candidates.append(np.argsort(-behaviour, kind="stable")[: settings.best_sellers])
    if len(past):
        _, neighbours = space.index.search(past, settings.neighbours)
        candidates.append(neighbours[neighbours >= 0])
    rebuy_rows, rebuy = np.zeros(0, np.int64), np.zeros(0)
    if include_seen and settings.rebuy_weight > 0:
        rebuy_rows, rebuy = repurchase(model, user, settings)
        candidates.append(rebuy_rows)
    candidates = np.unique(np.concatenate(candidates)).astype(np.int64)

    content = np.zeros(len(candidates))
    if len(past):
        vectors, has = space.vectors_of_rows(candidates)
        similarity = np.maximum(vectors @ past.T, 0.0) ** settings.sharpness
        content[has] = similarity @ weights / weights.sum()
        content /= content.max() if content.max() > 0 else 1.0
    scores = ((1.0 - settings.behaviour_weight) * content + settings.behaviour_weight * behaviour[candidates]
              + settings.popularity_weight * popular[candidates])
    if len(rebuy_rows):  # candidates are sorted and hold every rebuy row
        scores[np.searchsorted(candidates, rebuy_rows)] += settings.rebuy_weight * rebuy
    scores = np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)  # no NaN can reach an answer
    if include_seen:
        return candidates, scores
    unseen = ~np.isin(candidates, history)  # left out after scaling, so the scale is that of all candidates
    return candidates[unseen], scores[unseen]
