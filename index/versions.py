"""Versioned index roots: several index versions side by side, the live one named by a `current` link.

Layout of a root made by `vitrina reindex`:
  current -> versions/<version>   a symbolic link, switched by an atomic rename: readers see the old
                                  version or the new one, never a mix and never nothing
  versions/<version>/             complete index directories (see index.store); the newest `keep` stay
  .reindex/                       the shards and checkpoint of a re-index in progress (engine.reindex)
  events/                         the shoppers' event log of every version (engine.event_store)

Every command that takes an index directory accepts a root too and uses its current version.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from vitrina.index.errors import IndexStoreError
from vitrina.encoders.files import fsync_dir, is_abandoned, leftover_name
from vitrina.index.manifest import MANIFEST_FILE
from vitrina.errors import Param

CURRENT = "current"
VERSIONS_DIR = "versions"
ROOT_ENTRIES = {CURRENT, VERSIONS_DIR, ".reindex", ".lock", "events"}  # what a root holds (.reindex and .lock:
# engine.reindex; events: the root's event log, engine.event_store)


def is_versioned_root(path: Path) -> bool:
    return (Path(path) / CURRENT).is_symlink()


def resolve_index_path(path: str | Path) -> Path:
    """The index directory that `path` stands for: its current version when it is a versioned root."""
    path = Path(path)
    link = path / CURRENT
    if not link.is_symlink():
        return path
    target = link.resolve()
    if not (target / MANIFEST_FILE).is_file():
        raise IndexStoreError(f"{link} points at {target}, which is not a complete index; re-publish a version")
    return target


def versions(root: Path) -> list[Path]:
    """The complete versions under a root, oldest first (version names sort by time)."""
    folder = Path(root) / VERSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST_FILE).is_file())


def check_root(root: Path) -> None:
    """Refuse to turn something else into a versioned root."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise IndexStoreError("{root} is a file, not a directory", root=Param("path", root))
    if (root / MANIFEST_FILE).is_file():
        raise IndexStoreError(
            "{root} is a single-version index (made by `vitrina index`); re-index into a new directory, "
            "which then keeps versions and a `current` link", root=Param("path", root)
        )
    foreign = [p.name for p in root.iterdir() if p.name not in ROOT_ENTRIES] if root.is_dir() else []
    if foreign and not (root / VERSIONS_DIR).is_dir():
        raise IndexStoreError("{root} is a non-empty directory that is not a Vitrina index root; refusing to use it",
                              root=Param("path", root))


def staging_dir(root: Path) -> Path:
    """A fresh hidden directory under root/versions to build a version in (renamed when complete)."""
    folder = Path(root) / VERSIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".build-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def publish(root: Path, version_dir: Path, keep: int) -> list[Path]:
    """Make `version_dir` (a complete index under root/versions) the current one, atomically; then keep
    the newest `keep` versions plus the current one, and remove unfinished builds. Returns the
    versions removed."""
    root = Path(root)
    version_dir = Path(version_dir)
    if version_dir.parent != root / VERSIONS_DIR or not (version_dir / MANIFEST_FILE).is_file():
        raise IndexStoreError(f"{version_dir} is not a complete version under {root / VERSIONS_DIR}")
    link = root / CURRENT
    tmp = root / leftover_name(CURRENT, "tmp")
    os.symlink(Path(VERSIONS_DIR) / version_dir.name, tmp)  # relative: the root can move
    try:
        os.replace(tmp, link)  # rename(2): atomic
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    fsync_dir(root)
    return prune(root, keep)


def prune(root: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` versions (never the current one) and leftover builds; returns
    the versions removed."""
    if keep < 1:
        raise IndexStoreError(f"keep must be at least 1, got {keep}")
    root = Path(root)
    current = resolve_index_path(root) if is_versioned_root(root) else None
    removed = []
    for old in versions(root)[:-keep]:
        if current is None or old.resolve() != current:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    clean_builds(root)
    return removed


def clean_builds(root: Path) -> None:
    """Remove unfinished builds (versions/.build-*, ..build-*) and stray link temps of a root. Call it
    holding the root's writer lock (engine.reindex.root_lock): then no build in progress is another's."""
    root = Path(root)
    folder = root / VERSIONS_DIR
    for leftover in [*folder.glob(".build-*"), *folder.glob("..build-*")] if folder.is_dir() else ():
        shutil.rmtree(leftover, ignore_errors=True)
    for link in root.glob(f".{CURRENT}.tmp-*") if root.is_dir() else ():
        if is_abandoned(link):
            link.unlink(missing_ok=True)
