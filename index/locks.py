"""A folder's writer lock: exclusive across processes (flock), re-entrant within a thread, exclusive
between the threads of one process. Re-entrant, so a writer holding it may call code that takes it again
(forgetting a shopper refreshes the fused vectors of a plain index, whose edit takes the same lock)."""

from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

LOCK_FILE = ".lock"
_guard = threading.Lock()
_locks: dict[str, threading.RLock] = {}
_depth: dict[str, int] = {}
_handles: dict[str, IO] = {}


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold folder/.lock (the folder is created when missing); blocks until no other holder remains."""
    folder = Path(folder)
    key = str(folder.resolve() / LOCK_FILE)
    with _guard:
        local = _locks.setdefault(key, threading.RLock())
    with local:
        if not _depth.get(key):
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(key, "a+")
            fcntl.flock(handle, fcntl.LOCK_EX)
            _handles[key] = handle
        _depth[key] = _depth.get(key, 0) + 1
        try:
            yield
        finally:
            _depth[key] -= 1
            if not _depth[key]:
                handle = _handles.pop(key)
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
