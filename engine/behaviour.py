"""Behaviour vectors: item and user factors learned from weighted shopper events by implicit-feedback ALS.

Products nobody interacted with get no behaviour vector (`has_vector` is False, the row is zeros, never
NaN); downstream blends renormalise over the modalities a product has. New events fold in without a
full refit: touched users (new ones appended) and touched items are re-solved against all their
events so far; `refit=True` retrains everything.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import implicit.gpu
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares  # imported before threadpool_limits, so its BLAS is limited too
from threadpoolctl import threadpool_limits

from encoders.base import l2_normalize
from engine.errors import QueryError
from engine.events import EventLog

BEHAVIOUR_DIR = "behaviour"  # inside an index directory
STATE_FILE = "behaviour.json"
ARRAYS_FILE = "behaviour.npz"


@dataclass(frozen=True)
class BehaviourSettings:
    """ALS settings. Confidence of a (user, product) pair = alpha x the summed weight of its events."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 1.0
    seed: int = 0
    use_gpu: bool | None = None  # None: on a GPU when implicit was built with CUDA and one is present


@dataclass
class FoldInReport:
    events: int
    new_users: int
    users_updated: int
    items_updated: int
    refit: bool


def _als(settings: BehaviourSettings):
    return AlternatingLeastSquares(
        factors=settings.factors, regularization=settings.regularization, iterations=settings.iterations,
        random_state=settings.seed, use_gpu=implicit.gpu.HAS_CUDA if settings.use_gpu is None else settings.use_gpu,
    )


def _cpu(array) -> np.ndarray:
    """implicit's GPU factors to numpy (a no-op on the CPU)."""
    return np.asarray(array.to_numpy() if hasattr(array, "to_numpy") else array, dtype=np.float32)


class BehaviourModel:
    """Users, their summed event weights per product (users x products), and the ALS factors."""

    def __init__(self, users: list[str], interactions: sp.csr_matrix, user_factors: np.ndarray,
                 item_factors: np.ndarray, settings: BehaviourSettings, product_ids: list[str] | None = None,
                 last_seen: sp.csr_matrix | None = None) -> None:
        self.users = users
        self.product_ids = product_ids  # the index's product ids, row by row, when the model was trained
        self.user_index = {u: i for i, u in enumerate(users)}
        self.interactions = interactions.tocsr()
        # users x products: the time (epoch seconds) of each pair's latest event; None in models saved before it
        self.last_seen = None if last_seen is None else last_seen.tocsr()
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.settings = settings
        self.fit_id = ""  # changes on every full fit: factors of two fits live in different bases

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
        if i is None:
            return None
        v = self.user_factors[i]
        norm = float(np.linalg.norm(v))
        return (v / norm).astype(np.float32) if norm > 0 else None

    @classmethod
    def fit(cls, log: EventLog, n_products: int, settings: BehaviourSettings = BehaviourSettings(),
            show_progress: bool = False) -> "BehaviourModel":
        if not len(log):
            raise QueryError("no usable events to learn behaviour vectors from")
        users = list(dict.fromkeys(log.users.tolist()))
        model = cls(users, sp.csr_matrix((len(users), n_products), dtype=np.float32),
                    np.zeros((0, settings.factors), np.float32), np.zeros((n_products, settings.factors), np.float32),
                    settings)
        model.interactions, model.last_seen = model._merge(log)
        model._refit(show_progress)
        return model

    def _merge(self, log: EventLog) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """The interaction and last-seen matrices with `log` added; new users get new rows (self.users grows)."""
        for user in log.users.tolist():
            if user not in self.user_index:
                self.user_index[user] = len(self.users)
                self.users.append(user)
        rows = np.fromiter((self.user_index[u] for u in log.users.tolist()), dtype=np.int64, count=len(log))
        shape = (len(self.users), self.n_products)
        added = sp.csr_matrix((log.weights, (rows, log.product_rows)), shape=shape)
        # the latest time per pair: duplicates are summed by csr, so keep the max by hand
        order = np.lexsort((log.timestamps, log.product_rows, rows))
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (rows[order][1:] != rows[order][:-1]) | (log.product_rows[order][1:] != log.product_rows[order][:-1])
        pick = order[last]
        stamps = sp.csr_matrix((log.timestamps[pick].astype(np.float64), (rows[pick], log.product_rows[pick])), shape=shape)
        seen = self.last_seen if self.last_seen is not None else sp.csr_matrix(self.interactions.shape, dtype=np.float64)
        return (_grow(self.interactions, shape) + added).tocsr().astype(np.float32), _grow(seen, shape).maximum(stamps).tocsr()

    def _refit(self, show_progress: bool) -> None:
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads slow it down
            als = _als(self.settings)
            als.fit((self.interactions * self.settings.alpha).tocsr(), show_progress=show_progress)
        self.user_factors, self.item_factors = _cpu(als.user_factors), _cpu(als.item_factors)
        self.fit_id = uuid.uuid4().hex[:12]

    def add(self, log: EventLog, refit: bool = False) -> FoldInReport:
        """Fold new events in: re-solve the users and items they touch (or everything with `refit`)."""
        known_before = len(self.users)
        self.interactions, self.last_seen = self._merge(log)
        touched_users = np.unique([self.user_index[u] for u in log.users.tolist()]) if len(log) else np.zeros(0, int)
        touched_items = np.unique(log.product_rows)
        if refit:
            self._refit(show_progress=False)
        elif len(log):
            weighted = (self.interactions * self.settings.alpha).tocsr()
            with threadpool_limits(1, "blas"):
                als = _als(self.settings)
                als.user_factors = np.vstack([self.user_factors, np.zeros(
                    (len(self.users) - len(self.user_factors), self.settings.factors), np.float32)])
                als.item_factors = self.item_factors.copy()
                als.partial_fit_users(touched_users, weighted[touched_users])
                als.partial_fit_items(touched_items, weighted.T.tocsr()[touched_items])
            self.user_factors, self.item_factors = _cpu(als.user_factors), _cpu(als.item_factors)
        return FoldInReport(len(log), len(self.users) - known_before, len(touched_users), len(touched_items), refit)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        m = self.interactions
        seen = {} if self.last_seen is None else {
            "seen_data": self.last_seen.data, "seen_indices": self.last_seen.indices, "seen_indptr": self.last_seen.indptr}
        np.savez(directory / ARRAYS_FILE, user_factors=self.user_factors, item_factors=self.item_factors,
                 data=m.data, indices=m.indices, indptr=m.indptr, shape=np.asarray(m.shape), **seen)
        state = {"settings": asdict(self.settings), "users": self.users, "product_ids": self.product_ids,
                 "fit_id": self.fit_id}
        (directory / STATE_FILE).write_text(json.dumps(state) + "\n")

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
                    BehaviourSettings(**state["settings"]), state.get("product_ids"), seen)
        model.fit_id = str(state.get("fit_id", ""))
        return model


def _grow(matrix: sp.csr_matrix, shape: tuple[int, int]) -> sp.csr_matrix:
    """`matrix` with empty rows appended up to `shape` (new users)."""
    if matrix.shape[0] >= shape[0]:
        return matrix.tocsr()
    return sp.vstack([matrix, sp.csr_matrix((shape[0] - matrix.shape[0], shape[1]), dtype=matrix.dtype)]).tocsr()


def load_index_behaviour(index_path: Path, product_ids: list[str]) -> tuple[BehaviourModel | None, str]:
    """An index directory's behaviour model when it matches the index's products; else None and why."""
    if not (Path(index_path) / BEHAVIOUR_DIR / STATE_FILE).is_file():
        return None, f"{index_path} has no behaviour vectors yet; add events first (`vitrina events add`)"
    model = BehaviourModel.load(Path(index_path) / BEHAVIOUR_DIR)
    if model.product_ids is not None and model.product_ids != product_ids:
        return None, f"{index_path} was re-indexed after its events were added; add the events again"
    return model, ""
