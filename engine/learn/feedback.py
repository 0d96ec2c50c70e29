"""The feedback loop on an index directory: `vitrina events add` and `vitrina search --user`.

Events go to the root's event log (engine.event_store: pseudonymised, fsync'd, each applied once by
its identity) and are folded into the behaviour model, whose snapshot is then written into the index
directory (engine.shoppers). On an index with a shared space (`vitrina train`), added events also
refresh the fused product vectors. The log belongs to the root, so re-indexing, upserts and deletes
carry the behaviour vectors over (engine.carry_over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrina.engine.learn.behaviour import BehaviourModel, BehaviourConfig, FoldInReport, load_index_behaviour
from vitrina.engine.errors import QueryError
from vitrina.engine.data.events import EventFieldConfig, EventLog, EventProblems, EventWeightConfig, read_events
from vitrina.engine.learn.fusion import FUSION_DIR
from vitrina.engine.learn.shared_space import refresh_shared_space
from vitrina.engine.query.search import SearchHit, SearchSession, check_k
from vitrina.engine.learn.shoppers import ShopperState
from vitrina.index.hybrid import min_max_scaled


@dataclass
class EventsAdded:
    report: FoldInReport
    problems: EventProblems
    users: int
    products_with_vectors: int
    fused_refreshed: bool = False  # a trained index's fused vectors were recomputed with the new vectors
    notes: list[str] = field(default_factory=list)
    duplicates: int = 0  # events already in the log (applied before), skipped


def load_behaviour(session: SearchSession) -> BehaviourModel:
    """The index's behaviour model; a clear error when there is none."""
    model, why = load_index_behaviour(session.path, session.products.ids, session.config.shoppers)
    if model is None:
        raise QueryError(why)
    return model


def add_events(
    session: SearchSession, events_file: str | Path, weights: EventWeightConfig = EventWeightConfig(),
    fields: EventFieldConfig = EventFieldConfig(), refit: bool = False, settings: BehaviourConfig = BehaviourConfig(),
) -> EventsAdded:
    """Read events, apply the new ones (log, fold-in or first fit), snapshot the model."""
    return fold_in(session, read_events(events_file, session.products.rows_by_id, weights, fields), refit, settings)


def fold_in(session: SearchSession, log: EventLog, refit: bool = False,
            settings: BehaviourConfig = BehaviourConfig()) -> EventsAdded:
    """Apply an event log to the index: events not yet in the root's log are appended (fsync'd) and folded
    into the behaviour model (fit the first time); the model's snapshot is written, retention applied.
    One writer at a time per root (the log's lock), so a server and the CLI can both add."""
    state = ShopperState.of_index(session.path, session.products.ids, session.config.shoppers, settings)
    recorded = state.record(log, refit)
    rewritten = state.snapshot(session.config)
    if state.model is None:
        raise QueryError("no usable events to learn behaviour vectors from")
    added = EventsAdded(recorded.report, log.problems, len(state.model.users), int(state.model.has_vector.sum()),
                        duplicates=recorded.duplicates)
    if (session.path / FUSION_DIR).is_dir() and (recorded.report.events or refit or rewritten):
        added.notes = refresh_shared_space(session.path, session.config)
        added.fused_refreshed = True
    return added


PERSONAL_WEIGHT = 0.3  # share of the user's affinity in a personalised search score
PERSONAL_DEPTH = 100  # candidates re-ranked for a user


def personalised_search(session: SearchSession, query: str, user: str, k: int = 10, space: str | None = None,
                        mode: str | None = None, weight: float = PERSONAL_WEIGHT) -> tuple[list[SearchHit], bool]:
    """Search results re-ranked for `user`, and whether they were personalised (see `personalise`)."""
    check_k(k)
    scores, rows = session.retrieve([query], max(k, PERSONAL_DEPTH), space or session.default_space(), mode)
    return personalise(session, load_behaviour(session), scores[0], rows[0], user, k, weight)


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
