"""Behaviour vectors: item and user factors learned from weighted shopper events by implicit-feedback ALS.

Products nobody interacted with get no behaviour vector (`has_vector` is False, the row is zeros, never
NaN); downstream blends renormalise over the modalities a product has. New events fold in without a
full refit: touched users (new ones appended) and touched items are re-solved against all their
events so far; `refit=True` retrains everything.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import implicit.gpu
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares  # imported before threadpool_limits, so its BLAS is limited too
from implicit.cpu.als import AlternatingLeastSquares as CpuALS
from implicit.nearest_neighbours import bm25_weight
from threadpoolctl import threadpool_limits

from vitrina.encoders.base import l2_normalize
from vitrina.engine.errors import QueryError
from vitrina.engine.data.events import EventLog
from vitrina.engine.learn.co_purchase import CoPurchases
from vitrina.engine.learn.pseudonyms import Pseudonyms

if TYPE_CHECKING:
    from vitrina.engine.config import ShopperConfig

BEHAVIOUR_DIR = "behaviour"  # inside an index directory
STATE_FILE = "behaviour.json"
ARRAYS_FILE = "behaviour.npz"
RETURN_GAP_S = 86_400.0  # an event returns to a (user, product) pair when the pair's previous one is a day older
CONFIDENCES = ("linear", "log", "bm25")
SCORINGS = ("cosine", "dot")


@dataclass(frozen=True)
class BehaviourConfig:
    """ALS settings. Confidence of a (user, product) pair from the summed weight w of its events:
    "linear" alpha x w, "log" 1 + alpha x log1p(w / 8) (8: one purchase), "bm25" alpha x BM25(w)
    (K1 100, B 0.8, over all pairs). `scoring`: how `recommend` scores a shopper's affinity to a
    product, "cosine" of the two factor vectors or their "dot" product (scaled to [0, 1] per shopper)."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 1.0
    seed: int = 0
    use_gpu: bool | None = None  # None: on a GPU when implicit was built with CUDA and one is present
    confidence: Literal["linear", "log", "bm25"] = "linear"
    scoring: Literal["cosine", "dot"] = "cosine"

    def __post_init__(self) -> None:
        if self.confidence not in CONFIDENCES:
            raise QueryError(f"confidence must be one of {', '.join(CONFIDENCES)}, got {self.confidence!r}")
        if self.scoring not in SCORINGS:
            raise QueryError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.factors < 1 or self.iterations < 1 or self.regularization < 0 or self.alpha <= 0:
            raise QueryError("factors and iterations must be >= 1, regularization >= 0 and alpha > 0")


@dataclass
class FoldInReport:
    events: int
    new_users: int
    users_updated: int
    items_updated: int
    refit: bool


def _als(settings: BehaviourConfig):
    return AlternatingLeastSquares(
        factors=settings.factors, regularization=settings.regularization, iterations=settings.iterations,
        random_state=settings.seed, use_gpu=implicit.gpu.HAS_CUDA if settings.use_gpu is None else settings.use_gpu,
    )


def confidence(interactions: sp.csr_matrix, settings: BehaviourConfig) -> sp.csr_matrix:
    """The ALS confidence of every (user, product) pair from its summed event weight (BehaviourConfig)."""
    m = interactions.tocsr().astype(np.float32, copy=True)
    if settings.confidence == "log":
        m.data = (1.0 + settings.alpha * np.log1p(np.maximum(m.data, 0.0) / 8.0)).astype(np.float32)
    elif settings.confidence == "bm25":
        m = bm25_weight(m, K1=100, B=0.8).tocsr().astype(np.float32)
        m.data *= settings.alpha
    else:
        m.data *= settings.alpha
    return m


def _returns(rows: np.ndarray, log: EventLog, before: sp.csr_matrix | None) -> int:
    """How many of `log`'s events (at user `rows`) come back to a (user, product) pair a day or more after
    the pair's previous event (in this log, else `before`: users x products, the latest time per pair)."""
    if not len(log):
        return 0
    order = np.lexsort((log.timestamps, log.product_rows, rows))
    r, p, t = rows[order], log.product_rows[order], log.timestamps[order].astype(np.float64)
    previous = np.full(len(order), np.nan)
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (r[1:] == r[:-1]) & (p[1:] == p[:-1])
    previous[1:][same[1:]] = t[:-1][same[1:]]
    if before is not None and before.nnz:
        first = np.flatnonzero(~same & (r < before.shape[0]))
        if len(first):
            stamps = np.asarray(before[r[first], p[first]]).ravel()
            previous[first] = np.where(stamps > 0, stamps, np.nan)
    with np.errstate(invalid="ignore"):
        return int(np.sum(t - previous >= RETURN_GAP_S))


def _cpu(array) -> np.ndarray:
    """implicit's GPU factors to numpy (a no-op on the CPU)."""
    return np.asarray(array.to_numpy() if hasattr(array, "to_numpy") else array, dtype=np.float32)


class UserLookup:
    """The users of a model by raw id: each lookup hashes the id with the model's pseudonyms (when the
    model's users are keyed), so callers keep passing raw ids."""

    def __init__(self, rows: dict[str, int], pseudonyms: "Pseudonyms | None", keyed: bool) -> None:
        self._rows, self._pseudonyms, self._keyed = rows, pseudonyms, keyed

    def key(self, user: str) -> str | None:
        """The stored form of a raw id; None when the model is keyed but its secret is unknown."""
        if not self._keyed:
            return str(user)
        return None if self._pseudonyms is None else self._pseudonyms.user(str(user))

    def get(self, user: str, default: int | None = None) -> int | None:
        key = self.key(user)
        return default if key is None else self._rows.get(key, default)

    def __contains__(self, user: object) -> bool:
        return self.get(str(user)) is not None

    def __getitem__(self, user: str) -> int:
        row = self.get(user)
        if row is None:
            raise KeyError(user)
        return row

    def __len__(self) -> int:
        return len(self._rows)


class BehaviourModel:
    """Users, their summed event weights per product (users x products), and the ALS factors.

    `users` holds the stored form of each user id: keyed hashes (`keyed`, see engine.pseudonyms) for
    every model the event store writes, raw ids in models fitted directly or saved before keying.
    Lookups (`user_index`, `history`, `user_vector`) take raw ids either way.
    """

    def __init__(self, users: list[str], interactions: sp.csr_matrix, user_factors: np.ndarray,
                 item_factors: np.ndarray, settings: BehaviourConfig, product_ids: list[str] | None = None,
                 last_seen: sp.csr_matrix | None = None) -> None:
        self.users = users
        self.product_ids = product_ids  # the index's product ids, row by row, when the model was trained
        self.rows = {u: i for i, u in enumerate(users)}  # stored user id -> row
        self.interactions = interactions.tocsr()
        # users x products: the time (epoch seconds) of each pair's latest event; None in models saved before it
        self.last_seen = None if last_seen is None else last_seen.tocsr()
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.settings = settings
        self.fit_id = ""  # changes on every full fit: factors of two fits live in different bases
        self.keyed = False  # users are keyed hashes (engine.pseudonyms)
        self.pseudonyms = None  # hashes raw ids for lookups in a keyed model
        self.log_generation = ""  # the event log generation and byte offset this state covers
        self.log_offset = 0
        self._solver = None  # a CPU ALS kept between fold-ins (its Gram matrices updated, not recomputed)
        self.co_purchase: CoPurchases | None = None  # same-basket counts ("frequently bought together")
        self.event_count = 0  # events learned from, and of them those returning to a pair a day later or more
        self.return_count = 0

    @property
    def repeat_share(self) -> float | None:
        """Share of the learned events that return to a (user, product) pair a day or more after its
        previous event: re-buys in a purchase log (~0.27 at a wholesaler, ~0.03 at H&M). None when
        unknown (no events, or a model saved before it was counted)."""
        return self.return_count / self.event_count if self.event_count else None

    @property
    def user_index(self) -> UserLookup:
        """Raw user id -> row (hashed on lookup when the model is keyed)."""
        return UserLookup(self.rows, self.pseudonyms, self.keyed)

    @property
    def n_products(self) -> int:
        return self.interactions.shape[1]

    @property
    def latest(self) -> float | None:
        """The time (epoch seconds) of the newest event: "now" for the data, whatever the wall clock says."""
        return float(self.last_seen.data.max()) if self.last_seen is not None and self.last_seen.nnz else None

    def history(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """A known user's product rows and the age of each in days before `latest` (0 where unknown)."""
        i = self.user_index[str(user)]
        if i >= self.interactions.shape[0]:
            return np.zeros(0, np.int64), np.zeros(0)
        rows = self.interactions.indices[self.interactions.indptr[i] : self.interactions.indptr[i + 1]].astype(np.int64)
        if self.last_seen is None:
            return rows, np.zeros(len(rows))
        seen = np.asarray(self.last_seen[i, rows].todense()).ravel() if len(rows) else np.zeros(0)
        return rows, np.maximum(self.latest - seen, 0.0) / 86_400.0

    @property
    def shoppers_per_product(self) -> np.ndarray:
        """How many users interacted with each product row (its popularity)."""
        return np.asarray(self.interactions.getnnz(axis=0), dtype=np.float64)

    @property
    def has_vector(self) -> np.ndarray:
        """Per product row: whether any event touched it (only those have a behaviour vector)."""
        return np.asarray(self.interactions.getnnz(axis=0) > 0)

    def item_vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Unit-length item factors per product row (of `rows`, else all); zeros where `has_vector` is False."""
        rows = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
        return l2_normalize(np.where(self.has_vector[rows][:, None], self.item_factors[rows], 0.0))

    def user_vector(self, user: str) -> np.ndarray | None:
        """The user's unit-length factor vector, or None for a user with no events."""
        i = self.user_index.get(str(user))
        if i is None or i >= len(self.user_factors):
            return None
        v = self.user_factors[i]
        norm = float(np.linalg.norm(v))
        return (v / norm).astype(np.float32) if norm > 0 else None

    @classmethod
    def fit(cls, log: EventLog, n_products: int, settings: BehaviourConfig = BehaviourConfig(),
            show_progress: bool = False) -> "BehaviourModel":
        """A full fit; users and products enter the ALS in order of first appearance in `log`, so the same
        events in the same order give the same factors (the ALS is seeded) whatever else the catalog
        holds: the guarantee behind forgetting a shopper."""
        if not len(log):
            raise QueryError("no usable events to learn behaviour vectors from")
        users = list(dict.fromkeys(log.users.tolist()))
        model = cls(users, sp.csr_matrix((len(users), n_products), dtype=np.float32),
                    np.zeros((0, settings.factors), np.float32), np.zeros((n_products, settings.factors), np.float32),
                    settings)
        rows = np.fromiter((model.rows[u] for u in log.users.tolist()), dtype=np.int64, count=len(log))
        model.event_count, model.return_count = len(log), _returns(rows, log, None)
        model.interactions, model.last_seen = model._merged(rows, log, len(users))
        model.co_purchase = CoPurchases.fit(log, rows, n_products)
        model._refit(show_progress, np.asarray(list(dict.fromkeys(log.product_rows.tolist())), dtype=np.int64))
        return model

    def _merged(self, rows: np.ndarray, log: EventLog, n_users: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """The interaction and last-seen matrices with `log` (its events at user `rows`) added, `n_users` tall."""
        shape = (n_users, self.n_products)
        added = sp.csr_matrix((log.weights, (rows, log.product_rows)), shape=shape)
        # the latest time per pair: duplicates are summed by csr, so keep the max by hand
        order = np.lexsort((log.timestamps, log.product_rows, rows))
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (rows[order][1:] != rows[order][:-1]) | (log.product_rows[order][1:] != log.product_rows[order][:-1])
        pick = order[last]
        stamps = sp.csr_matrix((log.timestamps[pick].astype(np.float64), (rows[pick], log.product_rows[pick])), shape=shape)
        seen = self.last_seen if self.last_seen is not None else sp.csr_matrix(self.interactions.shape, dtype=np.float64)
        merged = (_grow(self.interactions, shape) + added).tocsr().astype(np.float32, copy=False)
        return merged, _grow(seen, shape).maximum(stamps).tocsr()

    def _refit(self, show_progress: bool, item_order: np.ndarray | None = None) -> None:
        """Fit every factor. The ALS sees only the products with events, in `item_order` (default: by row),
        so a fit does not depend on the products nobody touched (another version's catalog fits alike)."""
        touched = np.flatnonzero(self.has_vector) if item_order is None else np.asarray(item_order, dtype=np.int64)
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads slow it down
            als = _als(self.settings)
            als.fit(confidence(self.interactions, self.settings)[:, touched].tocsr(), show_progress=show_progress)
        items = np.zeros((self.n_products, self.settings.factors), np.float32)
        items[touched] = _cpu(als.item_factors)
        self.user_factors, self.item_factors = _cpu(als.user_factors), items
        self.fit_id = uuid.uuid4().hex[:12]
        self._solver = None

    def _cpu_solver(self) -> CpuALS:
        """The fold-in solver: a single-threaded CPU ALS sharing this model's factor arrays."""
        if self._solver is None:
            s = self.settings
            with threadpool_limits(1, "blas"):  # (implicit warns about a multi-threaded BLAS when built)
                self._solver = CpuALS(factors=s.factors, regularization=s.regularization, iterations=s.iterations,
                                      random_state=s.seed, num_threads=1)
            self._solver.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
            self._solver.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        return self._solver

    def add(self, log: EventLog, refit: bool = False) -> FoldInReport:
        """Fold new events in: re-solve only the users and items they touch (or everything with `refit`).

        The touched users are solved against the current item factors, then the touched items against
        the updated user factors (implicit's exact least squares, the Gram matrices updated by the rows
        that changed). Readers in other threads see either the old or the new state of each array: new
        rows are published last, after their factors exist.
        """
        known_before = len(self.users)
        fresh = [u for u in dict.fromkeys(log.users.tolist()) if u not in self.rows]
        new_rows = {u: known_before + k for k, u in enumerate(fresh)}
        rows = np.fromiter((self.rows.get(u, new_rows.get(u, -1)) for u in log.users.tolist()), dtype=np.int64,
                           count=len(log))
        n_users = known_before + len(fresh)
        returns = _returns(rows, log, self.last_seen)
        interactions, last_seen = self._merged(rows, log, n_users)
        touched_users, touched_items = np.unique(rows), np.unique(log.product_rows)
        if self.co_purchase is not None:
            self.co_purchase.add(log, rows)
        if refit:
            self.interactions, self.last_seen = interactions, last_seen
            self.users.extend(fresh)
            self.rows.update(new_rows)
            self._refit(show_progress=False)
        elif len(log):
            if self.settings.confidence == "bm25":  # BM25 weighs each pair by its product's and user's totals
                weighted = confidence(interactions, self.settings)
                user_rows, item_rows = weighted[touched_users].tocsr(), _columns(weighted, touched_items)
            else:
                user_rows = confidence(interactions[touched_users], self.settings)
                item_rows = confidence(_columns(interactions, touched_items), self.settings)
            # no threadpool_limits here: it scans the loaded libraries on every call (~2 ms a request), and
            # these are small solves (num_threads=1, factors x factors systems) that BLAS runs on one thread
            als = self._cpu_solver()
            if len(als.user_factors) < n_users:
                als.user_factors = np.vstack([als.user_factors, np.zeros(
                    (n_users - len(als.user_factors), self.settings.factors), np.float32)])
            gram = als.XtX
            before = als.user_factors[touched_users].copy()
            als.partial_fit_users(touched_users, user_rows)
            after = als.user_factors[touched_users]
            als._XtX = gram - before.T @ before + after.T @ after
            gram = als.YtY
            before = als.item_factors[touched_items].copy()
            als.partial_fit_items(touched_items, item_rows)
            after = als.item_factors[touched_items]
            als._YtY = gram - before.T @ before + after.T @ after
            self.user_factors, self.item_factors = als.user_factors, als.item_factors
            self.interactions, self.last_seen = interactions, last_seen
            self.users.extend(fresh)
            self.rows.update(new_rows)
        self.event_count += len(log)
        self.return_count += returns
        return FoldInReport(len(log), len(fresh), len(touched_users), len(touched_items), refit)

    def remapped(self, product_ids: list[str]) -> "BehaviourModel":
        """This model over another product list (a new index version): products matched by id keep their
        vector and events; products it does not know get none; its own removed products drop out."""
        old = {pid: i for i, pid in enumerate(self.product_ids or [])}
        target = np.asarray([old.get(pid, -1) for pid in product_ids], dtype=np.int64)
        column = np.full(self.n_products, -1, dtype=np.int64)
        column[target[target >= 0]] = np.flatnonzero(target >= 0)
        shape = (len(self.users), len(product_ids))

        def moved(matrix: sp.csr_matrix) -> sp.csr_matrix:
            coo = matrix.tocoo()
            keep = column[coo.col] >= 0
            return sp.csr_matrix((coo.data[keep], (coo.row[keep], column[coo.col[keep]])), shape=shape)

        items = np.zeros((len(product_ids), self.settings.factors), np.float32)
        items[target >= 0] = self.item_factors[target[target >= 0]]
        model = BehaviourModel(list(self.users), moved(self.interactions), self.user_factors.copy(), items,
                               self.settings, list(product_ids), None if self.last_seen is None else moved(self.last_seen))
        model.fit_id, model.keyed, model.pseudonyms = self.fit_id, self.keyed, self.pseudonyms
        model.co_purchase = None if self.co_purchase is None else self.co_purchase.remapped(target)
        model.log_generation, model.log_offset = self.log_generation, self.log_offset
        model.event_count, model.return_count = self.event_count, self.return_count
        return model

    def save(self, directory: str | Path, previous: str | Path | None = None) -> None:
        """Write the model into `directory`; `previous`: the folder of its last snapshot, whose unchanged
        co-purchase counts are linked rather than rewritten."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        m = self.interactions
        seen = {} if self.last_seen is None else {
            "seen_data": self.last_seen.data, "seen_indices": self.last_seen.indices, "seen_indptr": self.last_seen.indptr}
        with (directory / ARRAYS_FILE).open("wb") as f:
            np.savez(f, user_factors=self.user_factors[: len(self.users)], item_factors=self.item_factors,
                     data=m.data, indices=m.indices, indptr=m.indptr, shape=np.asarray(m.shape), **seen)
            f.flush()
            os.fsync(f.fileno())
        if self.co_purchase is not None:
            self.co_purchase.save(directory, None if previous is None else Path(previous))
        state = {"settings": asdict(self.settings), "users": self.users, "product_ids": self.product_ids,
                 "fit_id": self.fit_id, "users_keyed": self.keyed,
                 "repeats": {"events": self.event_count, "returns": self.return_count},
                 "log": {"generation": self.log_generation, "offset": self.log_offset}}
        with (directory / STATE_FILE).open("w") as f:
            f.write(json.dumps(state) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, directory: str | Path) -> "BehaviourModel":
        directory = Path(directory)
        if not (directory / STATE_FILE).is_file():
            raise QueryError(f"{directory} has no behaviour vectors yet; add events first")
        state = json.loads((directory / STATE_FILE).read_text())
        arrays = np.load(directory / ARRAYS_FILE)
        shape = tuple(arrays["shape"])
        matrix = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        seen = (sp.csr_matrix((arrays["seen_data"], arrays["seen_indices"], arrays["seen_indptr"]), shape=shape)
                if "seen_data" in arrays else None)
        model = cls(list(state["users"]), matrix, arrays["user_factors"], arrays["item_factors"],
                    BehaviourConfig(**state["settings"]), state.get("product_ids"), seen)
        model.fit_id = str(state.get("fit_id", ""))
        model.co_purchase = CoPurchases.load(directory)
        model.keyed = bool(state.get("users_keyed", False))
        repeats = state.get("repeats") or {}
        model.event_count, model.return_count = int(repeats.get("events", 0)), int(repeats.get("returns", 0))
        log = state.get("log") or {}
        model.log_generation, model.log_offset = str(log.get("generation", "")), int(log.get("offset", 0))
        return model


def _columns(matrix: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """The given (sorted, unique) columns of a csr matrix as rows of a new csr matrix (its transpose),
    by one vectorised pass over the stored entries (cheaper than scipy's column slicing)."""
    positions = np.flatnonzero(np.isin(matrix.indices, columns))
    rows = np.searchsorted(matrix.indptr, positions, side="right") - 1
    which = np.searchsorted(columns, matrix.indices[positions])
    return sp.csr_matrix((matrix.data[positions], (which, rows)), shape=(len(columns), matrix.shape[0]))


def _grow(matrix: sp.csr_matrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """`matrix` with empty rows appended up to `shape` (new users)."""
    if matrix.shape[0] >= shape[0]:
        return matrix.tocsr()
    return sp.vstack([matrix, sp.csr_matrix((shape[0] - matrix.shape[0], shape[1]), dtype=matrix.dtype)]).tocsr()


def load_index_behaviour(index_path: Path, product_ids: list[str], settings: "ShopperConfig | None" = None
                         ) -> tuple[BehaviourModel | None, str]:
    """An index directory's behaviour model (its snapshot, moved onto the index's products when they
    changed, plus the root's events logged after it); else None and why."""
    from vitrina.engine.config import ShopperConfig
    from vitrina.engine.learn.shoppers import ShopperState

    state = ShopperState.of_index(Path(index_path), list(product_ids), settings or ShopperConfig())
    return state.model, state.why
