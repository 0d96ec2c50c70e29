"""The event log of an index root: every applied shopper event, append-only, durable, pseudonymised.

Layout (ROOT/events/ of a versioned root, DIR/events/ of a plain index directory):
  log.jsonl        a header line {"vitrina_events": 1, "generation": G}, then one line per applied event:
                   {"id": keyed event id, "user": keyed user id, "product": product id, "weight": w, "ts": t}
                   plus "basket": keyed basket id, for events given one (engine.learn.co_purchase)
  user.key         the pseudonymisation secret (mode 0600; absent when VITRINA_USER_KEY is used)
  user.key.check   a fingerprint of the secret
  .lock            flock'd by every writer (appends, snapshots, rewrites)

Appends are written and fsync'd before an event is acknowledged; a torn last line (a crash in the
middle of a write, never acknowledged) is cut off by the next append. Positions in the log are byte
offsets; a rewrite (forget a shopper, retention) writes a new file beside the old one, renames it
over, and gives it a new generation, so a snapshot of an older generation is known to be stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vitrina.engine.errors import QueryError
from vitrina.index.locks import LOCK_FILE, folder_lock  # noqa: F401  (LOCK_FILE: the lock's name in the folder)
from vitrina.index.store import EVENTS_DIR  # noqa: F401  (re-exported: where the log lives in an index or root)
from vitrina.encoders.files import write_file_durably

LOG_FILE = "log.jsonl"


class EventLogError(QueryError):
    """The event log cannot be written (a full disk, no permission): nothing was applied."""


@dataclass
class StoredEvents:
    """Events as the log holds them: keyed ids and users, product ids, weights and times, row-aligned."""

    ids: np.ndarray  # object array of str
    users: np.ndarray  # object array of str (keyed)
    products: np.ndarray  # object array of str
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # float64
    baskets: np.ndarray | None = None  # object array of str (keyed basket ids, "" for none); None: no event has one

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "StoredEvents":
        none = np.zeros(0, dtype=object)
        return cls(none, none.copy(), none.copy(), np.zeros(0, np.float32), np.zeros(0, np.float64))

    def take(self, keep: np.ndarray) -> "StoredEvents":
        """The events where boolean mask (or index array) `keep` selects."""
        return StoredEvents(self.ids[keep], self.users[keep], self.products[keep], self.weights[keep], self.timestamps[keep],
                            None if self.baskets is None else self.baskets[keep])

    def lines(self) -> bytes:
        """The JSONL lines of these events."""
        baskets = [""] * len(self) if self.baskets is None else self.baskets.tolist()
        return "".join(
            json.dumps({"id": i, "user": u, "product": p, "weight": float(w), "ts": float(t), **({"basket": b} if b else {})},
                       separators=(",", ":")) + "\n"
            for i, u, p, w, t, b in zip(self.ids.tolist(), self.users.tolist(), self.products.tolist(),
                                        self.weights.tolist(), self.timestamps.tolist(), baskets)
        ).encode("utf-8")


class EventStore:
    """The append-only event log in one events folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOG_FILE

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's writer lock (blocking, re-entrant in a thread): appends, snapshots, rewrites and
        edits of a plain index directory holding this folder (index.store.editing) never interleave."""
        with folder_lock(self.folder):
            yield

    def generation(self) -> str:
        """The log's generation (changes on every rewrite); "" when there is no log yet."""
        if not self.exists:
            return ""
        with self.path.open("rb") as f:
            return _header(f.readline(), self.path)

    def size(self) -> int:
        """Bytes in the log (0 without one): a cheap way to see that another process appended."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0) -> tuple[StoredEvents, int, str]:
        """The complete events from byte `offset` (0: from the start), the offset after them, and the generation."""
        if not self.exists:
            return StoredEvents.empty(), 0, ""
        with self.path.open("rb") as f:
            header = f.readline()
            generation = _header(header, self.path)
            f.seek(max(offset, len(header)))
            data = f.read()
        start = max(offset, len(header))
        end = data.rfind(b"\n") + 1  # a torn last line (never acknowledged) is left out
        records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return _events(records), start + end, generation

    def append(self, events: StoredEvents) -> int:
        """Append events, fsync'd before returning (call under `locked`); the log's new end offset."""
        try:
            return self._append(events)
        except OSError as exc:  # the torn end, if any, is cut by the next append
            raise EventLogError(f"the event log {self.path} cannot be written ({exc.strerror or exc}); "
                                "no event was applied") from None

    def _append(self, events: StoredEvents) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.exists:
            self._write_new(StoredEvents.empty())
        with self.path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(max(0, size - 4096))
                tail = f.read()
                cut = size - (len(tail) - (tail.rfind(b"\n") + 1))
                if cut != size:  # a torn line from a crash mid-append: never acknowledged, so drop it
                    f.truncate(cut)
                f.seek(cut)
            start = f.tell()
            if len(events):
                try:
                    f.write(events.lines())
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    with contextlib.suppress(OSError):  # not acknowledged, so not kept (best effort)
                        f.truncate(start)
                        os.fsync(f.fileno())
                    raise
            return f.tell()

    def rewrite(self, events: StoredEvents) -> tuple[int, str]:
        """Replace the whole log by `events` under a new generation (beside and renamed, fsync'd; call
        under `locked`); the new end offset and generation. The old log stays whole when this fails."""
        try:
            return self._write_new(events)
        except OSError as exc:
            raise EventLogError(f"the event log {self.path} cannot be rewritten ({exc.strerror or exc}); "
                                "it is unchanged") from None

    def _write_new(self, events: StoredEvents) -> tuple[int, str]:
        generation = uuid.uuid4().hex
        data = json.dumps({"vitrina_events": 1, "generation": generation}).encode() + b"\n" + events.lines()
        write_file_durably(self.path, data)
        return len(data), generation


def _header(line: bytes, path: Path) -> str:
    try:
        header = json.loads(line)
        return str(header["generation"])
    except (ValueError, KeyError, TypeError):
        raise QueryError(f"{path} is not a Vitrina event log (bad header); restore it from a backup") from None


def _events(records: list[dict]) -> StoredEvents:
    if not records:
        return StoredEvents.empty()
    return StoredEvents(
        np.asarray([r["id"] for r in records], dtype=object), np.asarray([r["user"] for r in records], dtype=object),
        np.asarray([r["product"] for r in records], dtype=object),
        np.asarray([r["weight"] for r in records], dtype=np.float32),
        np.asarray([r["ts"] for r in records], dtype=np.float64),
        np.asarray([r.get("basket", "") for r in records], dtype=object) if any("basket" in r for r in records) else None,
    )


class IdSet:
    """The keyed ids of applied events: a sorted array (32 bytes per id) plus a set of recent ones."""

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self._base = np.unique(np.asarray([] if ids is None else ids.tolist(), dtype="S32"))
        self._recent: set[str] = set()

    def __len__(self) -> int:
        return len(self._base) + len(self._recent)

    def __contains__(self, event_id: str) -> bool:
        if event_id in self._recent:
            return True
        key = event_id.encode("ascii")
        pos = int(np.searchsorted(self._base, key))
        return pos < len(self._base) and self._base[pos] == key

    def add(self, event_id: str) -> None:
        self._recent.add(event_id)
        if len(self._recent) > 100_000:
            self.compact()

    def compact(self) -> None:
        """Merge the recent ids into the sorted array."""
        if self._recent:
            self._base = np.union1d(self._base, np.asarray(sorted(self._recent), dtype="S32"))
            self._recent = set()
