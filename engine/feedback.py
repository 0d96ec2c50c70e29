"""The feedback loop on an index directory: `vitrina events add` and `vitrina recommend`.

Behaviour vectors live in DIR/behaviour/ and are replaced whole (written beside, then renamed), so
a failed update leaves the previous ones. They are tied to the index's product rows: after a full
re-index, events must be added again.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.behaviour import STATE_FILE, BehaviourModel, BehaviourSettings, FoldInReport
from engine.errors import QueryError
from engine.events import EventFields, EventProblems, EventWeights, read_events
from engine.search import SearchHit, SearchSession, check_k
from index.store import replace_directory

BEHAVIOUR_DIR = "behaviour"


@dataclass
class EventsAdded:
    report: FoldInReport
    problems: EventProblems
    users: int
    products_with_vectors: int


def load_behaviour(session: SearchSession) -> BehaviourModel:
    """The index's behaviour model; a clear error when there is none or the index was rebuilt since."""
    model = BehaviourModel.load(session.path / BEHAVIOUR_DIR)
    if model.product_ids is not None and model.product_ids != session.products.ids:
        raise QueryError(f"{session.path} was re-indexed after its events were added; add the events again")
    return model


def add_events(
    session: SearchSession, events_file: str | Path, weights: EventWeights = EventWeights(),
    fields: EventFields = EventFields(), refit: bool = False, settings: BehaviourSettings = BehaviourSettings(),
) -> EventsAdded:
    """Read events, fold them into the index's behaviour vectors (or fit them the first time), save."""
    log = read_events(events_file, session.products.rows_by_id, weights, fields)
    target = session.path / BEHAVIOUR_DIR
    if (target / STATE_FILE).is_file():
        model = load_behaviour(session)
        report = model.add(log, refit=refit) if len(log) else FoldInReport(0, 0, 0, 0, refit)
    else:
        model = BehaviourModel.fit(log, len(session.products), settings)
        model.product_ids = list(session.products.ids)
        report = FoldInReport(len(log), len(model.users), len(model.users), int(model.has_vector.sum()), True)
    tmp = session.path / f".{BEHAVIOUR_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save(tmp)
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EventsAdded(report, log.problems, len(model.users), int(model.has_vector.sum()))


def recommend(session: SearchSession, user: str, k: int = 10, include_seen: bool = False) -> tuple[list[SearchHit], bool]:
    """Top-k products for `user` by behaviour vectors, and whether they are personalised.

    An unknown user gets the most popular products (summed event weight) instead.
    """
    check_k(k)
    model = load_behaviour(session)
    vector = model.user_vector(user)
    if vector is None:
        scores = np.asarray(model.interactions.sum(axis=0)).ravel().astype(np.float64)
    else:
        scores = (model.item_vectors() @ vector).astype(np.float64)
        if not include_seen:
            scores[model.interactions[model.user_index[str(user)]].indices] = -np.inf
    scores[~model.has_vector] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    top = top[np.isfinite(scores[top])]
    return session.hits(scores[top], top), vector is not None
