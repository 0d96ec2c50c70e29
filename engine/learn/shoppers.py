"""Shoppers' data of an index: the behaviour model kept current with the root's event log.

The event log (engine.event_store) belongs to the root and is the truth; each index version keeps a
snapshot of the behaviour model in DIR/behaviour/ (keyed by product id, with the log generation and
byte offset it covers). Loading = snapshot + replay of the log tail; a snapshot of another log
generation (the log was rewritten by forget or retention) is stale and the model is refit from the log.

Writers (`record`, `snapshot`, `forget`, retention) hold the log's lock. Nothing raw reaches disk:
user ids and event ids are keyed hashes (engine.pseudonyms). A model saved before keying (raw ids,
no log) is read as it is, and migrated on the first write: its interactions become log events and
its users keyed hashes, in every version of the root.

Forgetting a shopper (and retention) rewrites the log without their events and refits every
version's model from the remaining log with its saved settings: users in order of first appearance,
seeded ALS. So the product vectors afterwards are exactly those of an index whose events were the
remaining log added in one fit (`events add` on a fresh index, or `--refit`), whatever mix of
fold-ins built them before; fold-ins alone could not promise that (their result depends on the order
and batching of the events).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrina.engine.learn.behaviour import BEHAVIOUR_DIR, STATE_FILE, BehaviourModel, BehaviourConfig, FoldInReport
from vitrina.engine.config import ShopperConfig, VitrinaConfig
from vitrina.engine.learn.co_purchase import CoPurchases
from vitrina.engine.learn.event_store import EVENTS_DIR, EventStore, IdSet, StoredEvents
from vitrina.engine.data.events import EventLog, EventProblems, event_identity
from vitrina.engine.learn.pseudonyms import Pseudonyms
from vitrina.index.store import replace_directory
from vitrina.index.versions import is_versioned_root, resolve_index_path, versions
from vitrina.encoders.files import fsync_dir, leftover_name

DAY_S = 86_400.0
BASKET_PREFIX = "basket\x1f"  # keyed basket ids never equal a keyed event id


def events_root(path: Path) -> Path:
    """Where the event log of an index lives: the versioned root of a version (or staging) directory,
    the root itself, else the plain index directory."""
    path = Path(path)
    if is_versioned_root(path):
        return path
    if path.parent.name == "versions" and is_versioned_root(path.parent.parent):
        return path.parent.parent
    return path


def version_dirs(root: Path) -> list[Path]:
    """Every index directory sharing the root's log: all kept versions, or the plain directory."""
    return versions(root) if is_versioned_root(root) else [Path(root)]


@dataclass
class Recorded:
    """What one `record` call did: events applied, events skipped as already applied, the fold-in."""

    report: FoldInReport
    duplicates: int
    users: int
    products_with_vectors: int


class ShopperState:
    """The behaviour model of one product list (an index version), kept current with the root's log.

    snapshot_dir: where the model's snapshot is read and written (an index directory; None: none
    yet). Thread-safe: a lock serialises writers in this process, the log's flock across processes.
    """

    def __init__(self, root: Path, snapshot_dir: Path | None, product_ids: list[str],
                 settings: ShopperConfig = ShopperConfig(), behaviour: BehaviourConfig = BehaviourConfig()) -> None:
        self.root = Path(root)
        self.snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        self.store = EventStore(self.root / EVENTS_DIR)
        self.product_ids = list(product_ids)
        self.rows_by_id = {pid: i for i, pid in enumerate(self.product_ids)}
        self.settings = settings
        self.behaviour = behaviour  # ALS settings of a first fit (a snapshot keeps its own)
        self.pseudonyms = Pseudonyms.of(self.store.folder, settings.user_key, create=False)
        self.model: BehaviourModel | None = None
        self.offset, self.generation = 0, ""
        self.pending = 0  # events applied since the last snapshot
        self._refit = False  # a refit since the last snapshot (the model changed without new events)
        self._seen: IdSet | None = None  # ids of applied events, read on the first write
        self._lock = threading.RLock()
        self.load()

    @classmethod
    def of_index(cls, index_dir: Path, product_ids: list[str], settings: ShopperConfig = ShopperConfig(),
                 behaviour: BehaviourConfig = BehaviourConfig()) -> "ShopperState":
        """The state of an index directory (a version of a root, or a plain index)."""
        index_dir = resolve_index_path(Path(index_dir))  # a versioned root: its current version
        return cls(events_root(index_dir), index_dir, product_ids, settings, behaviour)

    @property
    def why(self) -> str:
        """Why there is no model (empty when there is one)."""
        if self.model is not None:
            return ""
        where = self.snapshot_dir or self.root
        return f"{where} has no behaviour vectors yet; add events first (`vitrina events add`)"

    # reading

    def load(self) -> None:
        """(Re)read the snapshot and replay the log after it (refit from the log when it is stale)."""
        with self._lock:
            self._find_key()
            model, newcomers = self._read_snapshot()
            generation = self.store.generation()
            if model is not None and not model.keyed:  # saved before keying: no log behind it yet
                self.model, self.offset, self.generation, self.pending = model, 0, generation, 0
                return
            if model is not None and model.log_generation != generation:
                model = None  # the log was rewritten since (forget, retention): refit from it
            if model is not None and newcomers:  # products the snapshot did not have: their logged events count
                before = self.store.read(0)[0]
                before = before.take(np.asarray([p in newcomers for p in before.products.tolist()], dtype=bool))
                if len(before):
                    model.add(self._as_log(before))  # (the tail is read from the snapshot's offset on, below)
            events, end, generation = self.store.read(model.log_offset if model is not None else 0)
            if model is None:
                model = self._fit(events, self.behaviour)
            elif len(events):
                model.add(self._as_log(events))
            if model is not None and model.co_purchase is None:  # a snapshot from before co-purchase counts
                model.co_purchase = co_purchases_from_log(model, self.store.read(0)[0], self.rows_by_id)
            self.model, self.offset, self.generation = model, end, generation
            self.pending = len(events)
            self._seen = None

    def _find_key(self) -> None:
        """The secret, once another process (the CLI, another worker) has created it."""
        if self.pseudonyms is None:
            self.pseudonyms = Pseudonyms.of(self.store.folder, self.settings.user_key, create=False)
            if self.model is not None:
                self.model.pseudonyms = self.pseudonyms

    def _read_snapshot(self) -> tuple[BehaviourModel | None, set[str]]:
        """The snapshot's model moved onto this state's products, and the product ids it did not have."""
        if self.snapshot_dir is None or not (self.snapshot_dir / BEHAVIOUR_DIR / STATE_FILE).is_file():
            return None, set()
        model = BehaviourModel.load(self.snapshot_dir / BEHAVIOUR_DIR)
        newcomers: set[str] = set()
        if model.product_ids is not None and model.product_ids != self.product_ids:
            newcomers = set(self.product_ids) - set(model.product_ids)
            model = model.remapped(self.product_ids)  # another version's products: matched by id
        model.product_ids = self.product_ids
        model.pseudonyms = self.pseudonyms
        return model, newcomers

    def _as_log(self, events: StoredEvents) -> EventLog:
        return as_event_log(events, self.rows_by_id)

    def _fit(self, events: StoredEvents, behaviour: BehaviourConfig) -> BehaviourModel | None:
        return fit_stored(events, self.product_ids, behaviour, self.pseudonyms)

    def catch_up(self) -> int:
        """Apply what other processes appended to the log since (reload when it was rewritten); events applied."""
        with self._lock:
            generation = self.store.generation()
            if self.store.size() == self.offset and generation == self.generation:
                return 0
            self._find_key()
            if generation != self.generation or (self.model is not None and not self.model.keyed):
                self.load()
                return self.pending
            events, end, _ = self.store.read(self.offset)
            if len(events):
                if self.model is None:
                    self.model = self._fit(self.store.read(0)[0], self.behaviour)
                else:
                    self.model.add(self._as_log(events))
                if self._seen is not None:
                    for event_id in events.ids.tolist():
                        self._seen.add(event_id)
            self.offset = end
            self.pending += len(events)
            return len(events)

    # writing

    def record(self, log: EventLog, refit: bool = False) -> Recorded:
        """Apply new events: skip those already in the log, append the rest (fsync'd), fold them in."""
        with self._lock, self.store.locked():
            self.ready_to_write()
            stored = self._keyed(log)
            fresh = np.zeros(len(stored), dtype=bool)
            batch: set[str] = set()
            for i, event_id in enumerate(stored.ids.tolist()):
                fresh[i] = event_id not in self._seen and event_id not in batch
                batch.add(event_id)
            new = stored.take(fresh)
            if len(new):
                self.offset = self.store.append(new)
                self.generation = self.store.generation()
                for event_id in new.ids.tolist():
                    self._seen.add(event_id)
                self.pending += len(new)
            applied = self._as_log(new)
            users_before = 0 if self.model is None else len(self.model.users)
            if self.model is None or refit:
                self._refit = True
                settings = self.behaviour if self.model is None else self.model.settings
                self.model = self._fit(self.store.read(0)[0], settings) if (len(applied) or refit) else self.model
                model = self.model
                report = FoldInReport(len(new), (len(model.users) - users_before) if model else 0,
                                      len(model.users) if model else 0, int(model.has_vector.sum()) if model else 0, True)
            else:
                report = self.model.add(applied)
                report.events = len(new)
            model = self.model
            return Recorded(report, int((~fresh).sum()), len(model.users) if model else 0,
                            int(model.has_vector.sum()) if model else 0)

    def ready_to_write(self) -> None:
        """Call under `store.locked()` before writing: the secret exists, a raw-id model is migrated (its
        events logged, its users keyed, in every version), others' appends applied, applied ids known."""
        self.pseudonyms = Pseudonyms.of(self.store.folder, self.settings.user_key, create=True)  # key and its check
        if self.model is not None:
            self.model.pseudonyms = self.pseudonyms
        if self.model is not None and not self.model.keyed:
            self._migrate()
        if not self.store.exists:
            self.offset, self.generation = self.store.rewrite(StoredEvents.empty())
        self.catch_up()
        if self._seen is None:
            self._seen = IdSet(self.store.read(0)[0].ids)

    def _keyed(self, log: EventLog) -> StoredEvents:
        p = self.pseudonyms
        products = log.product_ids if len(log.product_ids) == len(log) else np.asarray(
            [self.product_ids[r] for r in log.product_rows.tolist()], dtype=object)
        ids = log.ids if len(log.ids) == len(log) else np.asarray(  # a log built without ids: the reader's digest
            [event_identity(u, pid, f"weight={float(w)!r}", t)
             for u, pid, w, t in zip(log.users.tolist(), products.tolist(), log.weights.tolist(), log.timestamps.tolist())],
            dtype=object)
        baskets = (np.asarray([p.event(BASKET_PREFIX + b) if b else "" for b in log.baskets.tolist()], dtype=object)
                   if len(log.baskets) == len(log) and len(log) else None)  # keyed: no raw order number on disk
        return StoredEvents(np.asarray([p.event(i) for i in ids.tolist()], dtype=object),
                            np.asarray([p.user(u) for u in log.users.tolist()], dtype=object),
                            np.asarray(products, dtype=object), np.asarray(log.weights, dtype=np.float32),
                            np.asarray(log.timestamps, dtype=np.float64), baskets)

    def _migrate(self) -> None:
        """Under the log lock: a model of raw ids becomes log events (one per user and product, its summed
        weight and latest time) and keyed users, in this snapshot and every other version's."""
        model, p = self.model, self.pseudonyms
        coo = model.interactions.tocoo()
        raw = np.asarray(model.users, dtype=object)[coo.row]
        products = np.asarray(self.product_ids, dtype=object)[coo.col]
        stamps = (np.asarray(model.last_seen[coo.row, coo.col]).ravel() if model.last_seen is not None
                  else np.full(len(coo.data), time.time()))
        events = StoredEvents(
            np.asarray([p.event(f"migrated\x1f{u}\x1f{pid}") for u, pid in zip(raw.tolist(), products.tolist())], dtype=object),
            np.asarray([p.user(u) for u in raw.tolist()], dtype=object), products,
            coo.data.astype(np.float32), stamps.astype(np.float64))
        already = IdSet(self.store.read(0)[0].ids)  # a migration cut short before its snapshot was written
        events = events.take(np.asarray([i not in already for i in events.ids.tolist()], dtype=bool))
        self.offset = self.store.append(events)
        self.generation = self.store.generation()
        self._key_users(model)
        model.log_generation, model.log_offset = self.generation, self.offset
        if self.snapshot_dir is not None:
            write_snapshot(self.snapshot_dir, model)
        for other in version_dirs(self.root):
            if other != self.snapshot_dir and (other / BEHAVIOUR_DIR / STATE_FILE).is_file():
                old = BehaviourModel.load(other / BEHAVIOUR_DIR)
                if not old.keyed:
                    self._key_users(old)
                    write_snapshot(other, old)  # its log offset stays 0: it refits from the log when loaded

    def _key_users(self, model: BehaviourModel) -> None:
        model.users = [self.pseudonyms.user(u) for u in model.users]
        model.rows = {u: i for i, u in enumerate(model.users)}
        model.keyed, model.pseudonyms = True, self.pseudonyms

    def snapshot(self, config: VitrinaConfig | None = None) -> bool:
        """Write the model as this index's snapshot (with the log position it covers), applying the
        retention setting first; whether the log was rewritten (every version refit) by retention."""
        with self._lock, self.store.locked():
            if self.model is not None and not self.model.keyed:
                return False  # nothing new since a raw-id model was read (it migrates on a write)
            self.catch_up()
            rewritten = False
            if self.settings.max_age_days is not None and self.store.exists:
                events = self.store.read(0)[0]
                old = events.timestamps < time.time() - self.settings.max_age_days * DAY_S
                if old.any():
                    rebuild_from_log(self.root, events.take(~old), config or VitrinaConfig(progress=False))
                    self.load()  # every version refit; this one (maybe without a snapshot yet) too
                    rewritten = True
            if self.model is not None and self.snapshot_dir is not None and (
                    self.pending or self._refit or rewritten or not self._covered()):
                self.model.log_generation, self.model.log_offset = self.generation, self.offset
                write_snapshot(self.snapshot_dir, self.model)
            elif self.model is None and self.snapshot_dir is not None:
                _remove_snapshot(self.snapshot_dir)  # retention left no event of this index
            self.pending, self._refit = 0, False
            if self._seen is not None:
                self._seen.compact()
            return rewritten

    def _covered(self) -> bool:
        """Whether the snapshot on disk already covers this state's log position."""
        path = self.snapshot_dir / BEHAVIOUR_DIR / STATE_FILE
        if not path.is_file():
            return False
        position = json.loads(path.read_text()).get("log") or {}
        return position.get("generation") == self.generation and position.get("offset") == self.offset


def as_event_log(events: StoredEvents, rows_by_id: dict[str, int]) -> EventLog:
    """Stored events as an EventLog over one product list (events of products it lacks left out)."""
    rows = np.fromiter((rows_by_id.get(p, -1) for p in events.products.tolist()), dtype=np.int64, count=len(events))
    known = rows >= 0
    baskets = events.baskets[known] if events.baskets is not None else np.zeros(0, dtype=object)
    return EventLog(users=events.users[known], product_rows=rows[known], weights=events.weights[known],
                    timestamps=events.timestamps[known], problems=EventProblems(), ids=events.ids[known],
                    product_ids=events.products[known], baskets=baskets)


def co_purchases_from_log(model: BehaviourModel, events: StoredEvents, rows_by_id: dict[str, int]) -> CoPurchases:
    """A model's co-purchase counts built from the whole log (for a snapshot saved before they existed)."""
    log = as_event_log(events, rows_by_id)
    known = np.fromiter((model.rows.get(u, -1) for u in log.users.tolist()), dtype=np.int64, count=len(log))
    keep = known >= 0
    log = EventLog(log.users[keep], log.product_rows[keep], log.weights[keep], log.timestamps[keep], log.problems,
                   log.ids[keep], log.product_ids[keep], log.baskets[keep] if len(log.baskets) else log.baskets)
    return CoPurchases.fit(log, known[keep], model.n_products)


def fit_stored(events: StoredEvents, product_ids: list[str], behaviour: BehaviourConfig,
               pseudonyms: Pseudonyms | None) -> BehaviourModel | None:
    """A full, deterministic fit from stored events over `product_ids` (None when no event is of one)."""
    log = as_event_log(events, {p: i for i, p in enumerate(product_ids)})
    if not len(log):
        return None
    model = BehaviourModel.fit(log, len(product_ids), behaviour)
    model.product_ids, model.keyed, model.pseudonyms = list(product_ids), True, pseudonyms
    return model


def write_snapshot(index_dir: Path, model: BehaviourModel) -> None:
    """Save a model as DIR/behaviour: written beside, fsync'd, renamed over the old one."""
    index_dir = Path(index_dir)
    target = index_dir / BEHAVIOUR_DIR
    tmp = index_dir / leftover_name(BEHAVIOUR_DIR, "tmp")
    try:
        model.save(tmp, previous=target)
        replace_directory(tmp, target)
        fsync_dir(index_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_snapshot(index_dir: Path) -> None:
    target = Path(index_dir) / BEHAVIOUR_DIR
    if target.exists():
        gone = Path(index_dir) / leftover_name(BEHAVIOUR_DIR, "old")
        target.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)


def rebuild_from_log(root: Path, events: StoredEvents, config: VitrinaConfig) -> list[str]:
    """Under the log lock: replace the log by `events` (a new generation) and refit every version's model
    from it with the version's own ALS settings; fused vectors of trained versions are recomputed.
    Returns notes (e.g. behaviour left out of fused vectors until `vitrina train` runs again)."""
    from vitrina.engine.learn.fusion import FUSION_DIR
    from vitrina.engine.learn.shared_space import refresh_shared_space

    store = EventStore(Path(root) / EVENTS_DIR)
    end, generation = store.rewrite(events)
    pseudonyms = Pseudonyms.of(store.folder, config.shoppers.user_key, create=False)
    notes: list[str] = []
    for directory in version_dirs(root):
        if not (directory / BEHAVIOUR_DIR / STATE_FILE).is_file():
            continue
        old = BehaviourModel.load(directory / BEHAVIOUR_DIR)
        product_ids = old.product_ids if old.product_ids is not None else _product_ids(directory)
        model = fit_stored(events, product_ids, old.settings, pseudonyms)
        if model is None:
            _remove_snapshot(directory)
        else:
            model.log_generation, model.log_offset = generation, end
            write_snapshot(directory, model)
        if (directory / FUSION_DIR).is_dir():
            notes += [f"{directory.name}: {note}" for note in refresh_shared_space(directory, config)]
    return notes


def _product_ids(directory: Path) -> list[str]:
    from vitrina.index.products import ProductTable
    from vitrina.index.store import PRODUCTS_FILE

    return list(ProductTable.load(directory / PRODUCTS_FILE).ids)


@dataclass
class Forgotten:
    """What forgetting a shopper removed."""

    found: bool
    events_removed: int
    versions_refit: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"user_found": self.found, "events_removed": self.events_removed, "versions_refit": self.versions_refit,
                "notes": self.notes}


def forget(path: Path, user: str, config: VitrinaConfig) -> Forgotten:
    """Remove a shopper everywhere under an index root: their events from the log, their vector, and their
    part in every product vector (each version's model refit from the remaining log), fused vectors too."""
    from vitrina.engine.build.pipeline import root_lock

    root = events_root(Path(path))
    live = resolve_index_path(root)
    store = EventStore(root / EVENTS_DIR)
    guard = root_lock(root) if is_versioned_root(root) else nullcontext()
    with guard:
        if (live / BEHAVIOUR_DIR / STATE_FILE).is_file() and not BehaviourModel.load(live / BEHAVIOUR_DIR).keyed:
            state = ShopperState.of_index(live, _product_ids(live), config.shoppers)
            with state.store.locked():
                state.ready_to_write()  # a raw-id model: migrate it first, so it can be forgotten like any
        with store.locked():
            pseudonyms = Pseudonyms.of(store.folder, config.shoppers.user_key, create=False)
            if pseudonyms is None:
                return Forgotten(False, 0)
            keyed = pseudonyms.user(user)
            events = store.read(0)[0]
            theirs = events.users == keyed
            holders = [d for d in version_dirs(root) if (d / BEHAVIOUR_DIR / STATE_FILE).is_file()
                       and keyed in BehaviourModel.load(d / BEHAVIOUR_DIR).rows]
            if not theirs.any() and not holders:
                return Forgotten(False, 0)
            notes = rebuild_from_log(root, events.take(~theirs), config)
            refit = [d.name for d in version_dirs(root) if (d / BEHAVIOUR_DIR).is_dir()]
    return Forgotten(True, int(theirs.sum()), refit, notes)
