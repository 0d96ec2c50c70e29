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
from typing import Any, Mapping

from vitrina.engine.learn.behaviour import BehaviourConfig, FoldInReport
from vitrina.engine.errors import QueryError
from vitrina.engine.data.events import EventFieldConfig, EventLog, EventProblems, EventWeightConfig, read_events
from vitrina.engine.learn.fusion import FUSION_DIR
from vitrina.engine.learn.shared_space import refresh_shared_space
from vitrina.engine.learn.shoppers import ShopperState
from vitrina.engine.query.compose import plan_text_search, run_text_search
from vitrina.engine.query.filters import PriceRange
from vitrina.engine.query.personalise import PERSONAL_WEIGHT, load_behaviour
from vitrina.engine.query.search import SearchHit, SearchSession, check_k


@dataclass
class EventsAdded:
    report: FoldInReport
    problems: EventProblems
    users: int
    products_with_vectors: int
    fused_refreshed: bool = False  # a trained index's fused vectors were recomputed with the new vectors
    notes: list[str] = field(default_factory=list)
    duplicates: int = 0  # events already in the log (applied before), skipped


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


def personalised_search(session: SearchSession, query: str, user: str, k: int = 10, space: str | None = None,
                        mode: str | None = None, weight: float = PERSONAL_WEIGHT, *, where: Mapping[str, Any] | None = None,
                        price: PriceRange | None = None) -> tuple[list[SearchHit], bool]:
    """Search results re-ranked for `user`, and whether they were personalised (see `personalise`)."""
    check_k(k)
    search = plan_text_search(session, [query], k, space, mode, where=where, price=price, user=user)
    answer = run_text_search(session, search, behaviour=load_behaviour(session), weight=weight)[0]
    return list(answer), bool(answer.personalised)
