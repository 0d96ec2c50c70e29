"""Search results re-ranked for one shopper by their behaviour vector (`search --user`, `/search?user=`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vitrina.engine.errors import QueryError
from vitrina.engine.query.hits import SearchHit
from vitrina.index.hybrid import min_max_scaled

if TYPE_CHECKING:
    from vitrina.engine.learn.behaviour import BehaviourModel
    from vitrina.engine.query.search import SearchSession

PERSONAL_WEIGHT = 0.3  # share of the user's affinity in a personalised search score
PERSONAL_DEPTH = 100  # candidates re-ranked for a user


def load_behaviour(session: SearchSession) -> BehaviourModel:
    """The index's behaviour model; a clear error when there is none."""
    from vitrina.engine.learn.behaviour import load_index_behaviour  # the ALS library: only for personalised searches

    model, why = load_index_behaviour(session.path, session.products.ids, session.config.shoppers)
    if model is None:
        raise QueryError(why)
    return model


def personalise(session: SearchSession, model: BehaviourModel, scores: np.ndarray, rows: np.ndarray, user: str,
                k: int, weight: float = PERSONAL_WEIGHT) -> tuple[list[SearchHit], bool]:
    """Re-rank one query's results (best PERSONAL_DEPTH or more) for `user`; whether it was personalised.

    Each result is re-scored as (1 - weight) x its min-max scaled search score + weight x the min-max
    scaled affinity of the user's behaviour vector for the product (products without a behaviour
    vector get none). An unknown user gets the plain results.
    """
    if not 0.0 <= weight <= 1.0:
        raise QueryError(f"the personalisation weight must be between 0 and 1, got {weight}")
    valid = rows >= 0
    scores, rows = scores[valid].astype(np.float64), rows[valid]
    vector = model.user_vector(user)
    if vector is None or not len(rows):
        return session.hits(scores, rows, k=k), False
    affinity = np.where(model.has_vector[rows], model.item_vectors(rows) @ vector, np.nan)
    total = (1.0 - weight) * min_max_scaled(scores) + weight * min_max_scaled(affinity)
    total = np.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0)  # no NaN can reach an answer
    order = np.lexsort((rows, -total))[:k]
    return session.hits(total[order], rows[order]), True
