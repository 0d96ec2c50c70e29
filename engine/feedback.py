"""The feedback loop on an index directory: `vitrina events add` and `vitrina search --user`.

On an index with a shared space (`vitrina train`), added events also refresh the fused product vectors.
Behaviour vectors live in DIR/behaviour/ and are replaced whole (written beside, then renamed), so
a failed update leaves the previous ones. They are tied to the index's product rows: after a full
re-index, events must be added again.
"""

from __future__ import annotations

import fcntl
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.behaviour import BEHAVIOUR_DIR, STATE_FILE, BehaviourModel, BehaviourSettings, FoldInReport, load_index_behaviour
from engine.errors import QueryError
from engine.events import EventFields, EventLog, EventProblems, EventWeights, read_events
from engine.fusion import FUSION_DIR
from engine.shared_space import refresh_shared_space
from engine.search import SearchHit, SearchSession, check_k
from index.rank_fusion import min_max_scaled
from index.store import replace_directory

LOCK_FILE = ".events.lock"  # held while behaviour vectors are rewritten


@dataclass
class EventsAdded:
    report: FoldInReport
    problems: EventProblems
    users: int
    products_with_vectors: int
    fused_refreshed: bool = False  # a trained index's fused vectors were recomputed with the new vectors
    notes: list[str] = field(default_factory=list)


def load_behaviour(session: SearchSession) -> BehaviourModel:
    """The index's behaviour model; a clear error when there is none or the index was rebuilt since."""
    model, why = load_index_behaviour(session.path, session.products.ids)
    if model is None:
        raise QueryError(why)
    return model


def add_events(
    session: SearchSession, events_file: str | Path, weights: EventWeights = EventWeights(),
    fields: EventFields = EventFields(), refit: bool = False, settings: BehaviourSettings = BehaviourSettings(),
) -> EventsAdded:
    """Read events, fold them into the index's behaviour vectors (or fit them the first time), save."""
    return fold_in(session, read_events(events_file, session.products.rows_by_id, weights, fields), refit, settings)


def fold_in(session: SearchSession, log: EventLog, refit: bool = False,
            settings: BehaviourSettings = BehaviourSettings()) -> EventsAdded:
    """Fold an event log into the index's behaviour vectors (fit them the first time) and save them;
    one writer at a time per index directory (a lock file), so a server and the CLI can both add."""
    with _writer_lock(session.path):
        return _fold_in_locked(session, log, refit, settings)


@contextmanager
def _writer_lock(index_path: Path) -> Iterator[None]:
    with open(index_path / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fold_in_locked(session: SearchSession, log: EventLog, refit: bool, settings: BehaviourSettings) -> EventsAdded:
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
    added = EventsAdded(report, log.problems, len(model.users), int(model.has_vector.sum()))
    if (session.path / FUSION_DIR).is_dir() and len(log):
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
