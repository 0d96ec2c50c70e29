"""Co-purchases: how often two products were bought in one basket, for "frequently bought together".

A basket is one shopper's events that share a basket id (the events file's `basket_id` column, else its
`session_id`: an order, an invoice, a checkout session). Events without one fall back to a session rule:
the same shopper's events in the same `session_hours` period (UTC-aligned; 24 h = the same UTC day).
A fixed period rather than a gap between events keeps the counts independent of the order and batching
in which events arrive: folding new events in gives exactly the counts of one fit over all of them.
Only events weighing at least `min_weight` count (4: carts and purchases at the default event weights;
views and clicks are not a basket).

For each product pair two numbers are kept: the baskets holding both, and the distinct shoppers who
bought both in one basket (answers may require a minimum of those, so that no pair shown reflects a
single shopper's habits). Nothing but these counts leaves this module: no shopper or basket id.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrina.encoders.files import file_identity
from vitrina.engine.data.events import EventLog

CO_PURCHASE_FILE = "co_purchase.npz"  # beside the behaviour snapshot (DIR/behaviour/)


@dataclass(frozen=True)
class CoPurchaseConfig:
    """How events become baskets (fixed when the counts are built; saved with them)."""

    session_hours: float = 24.0  # events without a basket id: one shopper's events in one such UTC-aligned period
    min_weight: float = 4.0  # lighter events (views 1, clicks 2 at the default weights) are in no basket

    def __post_init__(self) -> None:
        if not 0 < self.session_hours < float("inf") or not np.isfinite(self.min_weight):
            raise ValueError("the session length must be a positive number of hours and the minimum weight finite")


class CoPurchases:
    """Baskets (baskets x products, 0/1), their shoppers (a behaviour-model user row per basket), and per
    product pair the baskets holding both (`together`) and the distinct shoppers who bought both at once
    (`shoppers`); both products x products, the diagonal holding each product's own basket count."""

    def __init__(self, n_products: int, settings: CoPurchaseConfig = CoPurchaseConfig()) -> None:
        self.settings = settings
        self.keys: dict[str, int] = {}  # "user row:keyed basket id" or "user row@period" -> basket row
        self.basket_users = np.zeros(0, np.int64)
        self.baskets = sp.csr_matrix((0, n_products), dtype=np.float32)
        self.together = sp.csr_matrix((n_products, n_products), dtype=np.float32)
        self.shoppers = sp.csr_matrix((n_products, n_products), dtype=np.float32)
        self._stored: FileIdentity | None = None  # a file on disk holding exactly these counts

    @property
    def n_products(self) -> int:
        return self.baskets.shape[1]

    def product_baskets(self) -> np.ndarray:
        """Each product's number of baskets (the diagonal of `together`), kept until the counts change."""
        cached = getattr(self, "_diagonal", None)
        if cached is None or cached[0] is not self.together:
            cached = (self.together, self.together.diagonal().astype(np.float64))
            self._diagonal = cached
        return cached[1]

    def pair_row(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the products bought with product `row`, the baskets holding both, the distinct shoppers of each)."""
        together, shoppers = self.together, self.shoppers  # one consistent pair, even while a fold-in runs
        line, theirs = together.getrow(row), shoppers.getrow(row)
        dense = np.zeros(self.n_products)
        dense[theirs.indices] = theirs.data
        rows = line.indices.astype(np.int64)
        return rows, line.data.astype(np.float64), dense[rows]

    @classmethod
    def fit(cls, log: EventLog, user_rows: np.ndarray, n_products: int,
            settings: CoPurchaseConfig = CoPurchaseConfig()) -> "CoPurchases":
        """Counts from `log`, whose events belong to the behaviour model's users `user_rows` (row-aligned)."""
        counts = cls(n_products, settings)
        counts.add(log, user_rows)
        return counts

    def basket_keys(self, log: EventLog, user_rows: np.ndarray) -> np.ndarray:
        """Each event's basket key (object array; "" for an event in no basket)."""
        period = self.settings.session_hours * 3600.0
        named = log.baskets if len(log.baskets) == len(log) else np.full(len(log), "", dtype=object)
        keys = np.empty(len(log), dtype=object)
        for i, (user, basket, stamp, weight) in enumerate(zip(user_rows.tolist(), named.tolist(),
                                                               log.timestamps.tolist(), log.weights.tolist())):
            if weight < self.settings.min_weight:
                keys[i] = ""
            else:
                keys[i] = f"{user}:{basket}" if basket else f"{user}@{int(stamp // period)}"
        return keys

    def add(self, log: EventLog, user_rows: np.ndarray) -> int:
        """Fold events in (exact: the same counts as a fit over all events so far); baskets touched."""
        keys = self.basket_keys(log, np.asarray(user_rows, dtype=np.int64))
        use = keys != ""
        if not use.any():
            return 0
        keys, users, products = keys[use], np.asarray(user_rows, np.int64)[use], log.product_rows[use]
        touched_users = np.unique(users)
        before = np.isin(self.basket_users, touched_users)
        old_together, old_shoppers = pair_counts(self.baskets[before], self.basket_users[before], self.n_products)
        fresh = [key for key in dict.fromkeys(keys.tolist()) if key not in self.keys]
        first = len(self.keys)
        for offset, key in enumerate(fresh):
            self.keys[key] = first + offset
        owner = dict(zip(keys.tolist(), users.tolist()))
        self.basket_users = np.concatenate([self.basket_users, np.asarray([owner[k] for k in fresh], dtype=np.int64)])
        rows = np.fromiter((self.keys[k] for k in keys.tolist()), dtype=np.int64, count=len(keys))
        shape = (len(self.keys), self.n_products)
        added = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, products)), shape=shape)
        grown = sp.vstack([self.baskets, sp.csr_matrix((len(fresh), self.n_products), dtype=np.float32)]).tocsr()
        self.baskets = (grown + added).sign().tocsr().astype(np.float32)
        after = np.isin(self.basket_users, touched_users)
        new_together, new_shoppers = pair_counts(self.baskets[after], self.basket_users[after], self.n_products)
        together = _pruned(self.together - old_together + new_together)
        shoppers = _pruned(self.shoppers - old_shoppers + new_shoppers)
        self.shoppers, self.together = shoppers, together
        self._stored = None
        return int(len(np.unique(rows)))

    def remapped(self, target: np.ndarray) -> "CoPurchases":
        """These counts over another product list: `target[j]` is new product j's row here (-1: new product)."""
        column = np.full(self.n_products, -1, dtype=np.int64)
        column[target[target >= 0]] = np.flatnonzero(target >= 0)
        coo = self.baskets.tocoo()
        keep = column[coo.col] >= 0
        moved = CoPurchases(len(target), self.settings)
        moved.keys, moved.basket_users = dict(self.keys), self.basket_users.copy()
        moved.baskets = sp.csr_matrix((coo.data[keep], (coo.row[keep], column[coo.col[keep]])),
                                      shape=(self.baskets.shape[0], len(target)), dtype=np.float32)
        moved.together, moved.shoppers = pair_counts(moved.baskets, moved.basket_users, len(target))
        return moved

    def save(self, directory: Path, previous: Path | None = None) -> None:
        """Write the counts into `directory` (fsync'd). When `previous` (a folder) holds the very file these
        counts were read from or last written to, unchanged since, it is hard-linked instead of rewritten
        (the counts of a large shop are 100 MB or more and most event batches touch no basket)."""
        target = Path(directory) / CO_PURCHASE_FILE
        if previous is not None and self._stored is not None and self._stored.holds(Path(previous) / CO_PURCHASE_FILE):
            try:
                os.link(Path(previous) / CO_PURCHASE_FILE, target)
                return
            except OSError:
                pass  # another file system, or links refused: write it
        arrays = {"keys": np.asarray(list(self.keys), dtype=str), "basket_users": self.basket_users,
                  "settings": np.asarray(json.dumps(asdict(self.settings))), "n_products": np.asarray(self.n_products)}
        for name in ("baskets", "together", "shoppers"):
            m = getattr(self, name)
            arrays.update({f"{name}_data": m.data, f"{name}_indices": m.indices, f"{name}_indptr": m.indptr,
                           f"{name}_rows": np.asarray(m.shape[0])})
        with target.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        self._stored = FileIdentity.of(target)

    @classmethod
    def load(cls, directory: Path) -> "CoPurchases | None":
        """The counts saved in `directory`, or None when it has none (a snapshot from before them)."""
        path = Path(directory) / CO_PURCHASE_FILE
        if not path.is_file():
            return None
        arrays = np.load(path)
        n = int(arrays["n_products"])
        counts = cls(n, CoPurchaseConfig(**json.loads(str(arrays["settings"]))))
        counts.keys = {str(k): i for i, k in enumerate(arrays["keys"].tolist())}
        counts.basket_users = arrays["basket_users"].astype(np.int64)
        for name in ("baskets", "together", "shoppers"):
            shape = (int(arrays[f"{name}_rows"]), n)
            setattr(counts, name, sp.csr_matrix(
                (arrays[f"{name}_data"], arrays[f"{name}_indices"], arrays[f"{name}_indptr"]), shape=shape))
        counts._stored = FileIdentity.of(path)
        return counts


@dataclass(frozen=True)
class FileIdentity:
    """A file as it was (device, inode, size, modification time): whether a path still holds it. The first four
    fields of `encoders.files.file_identity`: not its change time, which the hard link to the file alters."""

    device: int
    inode: int
    size: int
    modified_ns: int

    @classmethod
    def of(cls, path: Path) -> "FileIdentity":
        return cls(*file_identity(os.stat(path))[:4])

    def holds(self, path: Path) -> bool:
        try:
            return FileIdentity.of(path) == self
        except OSError:
            return False


def pair_counts(baskets: sp.csr_matrix, users: np.ndarray, n_products: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(baskets holding both products, distinct shoppers who bought both in one basket) per product pair."""
    together = (baskets.T @ baskets).tocsr().astype(np.float32)
    if not baskets.shape[0]:
        return together, together.copy()
    order = np.argsort(users, kind="stable")
    users, baskets = users[order], baskets[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    single = np.zeros(len(users), dtype=bool)
    single[starts[ends - starts == 1]] = True
    lone = baskets[single]
    shoppers = (lone.T @ lone).tocsr().astype(np.float32)  # a shopper with one basket: their pairs as they are
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    held = 0
    for start, end in zip(starts[ends - starts > 1].tolist(), ends[ends - starts > 1].tolist()):
        theirs = (baskets[start:end].T @ baskets[start:end]).tocoo()  # each pair once per shopper
        rows.append(theirs.row)
        cols.append(theirs.col)
        held += len(theirs.row)
        if held > 4_000_000 or end == len(users):  # summed in chunks, to bound memory
            shoppers = shoppers + sp.csr_matrix((np.ones(held, np.float32), (np.concatenate(rows), np.concatenate(cols))),
                                                shape=(n_products, n_products))
            rows, cols, held = [], [], 0
    if held:
        shoppers = shoppers + sp.csr_matrix((np.ones(held, np.float32), (np.concatenate(rows), np.concatenate(cols))),
                                            shape=(n_products, n_products))
    return together, shoppers.tocsr()


def _pruned(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = matrix.tocsr().astype(np.float32)
    matrix.data = np.round(matrix.data)  # counts: float sums of 0/1 stay whole
    matrix.eliminate_zeros()
    return matrix
