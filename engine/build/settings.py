"""Index settings files (synonyms, merchandising rules): stored with an index, changed by publishing a version.

A settings file is a small file of bytes kept in an index directory as `settings/<name>` (vitrina.index.settings).
How a feature uses it:

- read it where the index is loaded: `IndexDirectory.settings[name]` (loaded with the directory; a server's
  `POST /admin/reload` loads the root's new current version, so it sees a new file), or
  `read_setting(directory_path, name) -> bytes | None` (an index directory or a versioned root);
- store it at build time: `build_index(..., settings_files={name: data})` (`vitrina index`) and
  `reindex(..., settings_files={name: data})` (`vitrina reindex`; files not given are carried over from the
  live version, remove one with `publish_setting(root, name, None)`). In the CLI, add your flag's file to `vitrina.cli.build.settings_files(args)`;
- change it on an existing index: `publish_setting(root, name, data | None, config, keep=3)` writes a NEW version
  of the versioned root equal to the live one with `settings/<name>` replaced (None removes it) and makes it
  current; a plain directory made by `vitrina index` is first turned into a root (as `Index.upsert` does);
- upsert, delete and reindex of a root keep the live version's settings files (`carried_settings`, called by
  engine.build.pipeline.publish_version) unless the new build sets its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

from vitrina.encoders.files import copy_tree
from vitrina.engine.config import VitrinaConfig
from vitrina.index.errors import IndexStoreError
from vitrina.index.manifest import MANIFEST_FILE, IndexManifest
from vitrina.index.settings import (SETTINGS_DIR, check_setting_data, check_setting_name, read_setting,
                                    read_settings)
from vitrina.index.versions import is_versioned_root, publish, resolve_index_path, staging_dir

__all__ = ["SETTINGS_DIR", "SettingsFiles", "build_settings", "carried_settings", "publish_setting", "publish_settings", "read_setting"]

SettingsFiles = Mapping[str, "bytes | None"]  # name -> new bytes, or None: remove the file


def checked_settings(files: SettingsFiles | None) -> dict[str, bytes | None]:
    """`files` with every name and content checked (IndexStoreError names the bad one)."""
    return {check_setting_name(name): None if data is None else check_setting_data(name, data)
            for name, data in (files or {}).items()}


def build_settings(files: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """The settings files a build stores (`settings_files=` of build_index and reindex), checked."""
    checked = checked_settings(files)
    if any(data is None for data in checked.values()):
        raise IndexStoreError("a build stores settings files; remove one from a root with publish_setting(root, name, None)")
    return checked  # type: ignore[return-value]


def carried_settings(live_dir: Path | None, new: Mapping[str, bytes]) -> dict[str, bytes]:
    """The settings of a new version of a root: the live version's files, replaced by those the build set."""
    return {**(read_settings(live_dir) if live_dir is not None else {}), **new}


def publish_setting(root: str | Path, name: str, data: bytes | None, config: VitrinaConfig | None = None,
                    keep: int = 3) -> Path:
    """Publish a new version of `root` equal to the live one with `settings/<name>` set to `data` (None removes
    it); returns the new version's directory. See `publish_settings`."""
    return publish_settings(root, {name: data}, config, keep)


def publish_settings(root: str | Path, changes: SettingsFiles, config: VitrinaConfig | None = None,
                     keep: int = 3) -> Path:
    """Publish a new version of the versioned root `root`: a copy of the live version with its settings files
    changed (new bytes replace a file, None removes it), made current atomically; the live version is never
    touched and a failure leaves the root as it was. A plain index directory (`vitrina index`) is first turned
    into a versioned root in place. Takes the root's writer lock (a concurrent reindex or upsert is refused)."""
    from vitrina.engine.build.in_place import versioned_in_place
    from vitrina.engine.build.pipeline import root_lock

    root = Path(root)
    changes = checked_settings(changes)
    if keep < 1:
        raise IndexStoreError(f"keep must be at least 1, got {keep}")
    if not is_versioned_root(root):
        if not (root / MANIFEST_FILE).is_file():
            raise IndexStoreError(f"{root} is not a Vitrina index (no {MANIFEST_FILE} and no current version)")
        versioned_in_place(root, config)
    with root_lock(root):
        live = resolve_index_path(root)
        staging, target = staging_dir(root), None
        try:
            copy_tree(live, staging)
            folder = staging / SETTINGS_DIR
            for name, data in changes.items():
                if data is None:
                    (folder / name).unlink(missing_ok=True)
                else:
                    folder.mkdir(exist_ok=True)
                    (folder / name).write_bytes(data)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            manifest = IndexManifest.load(staging)
            manifest.save(staging)  # a new version name: the directory's content changed
            target = staging.parent / manifest.version
            os.replace(staging, target)
            publish(root, target, keep)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if target is not None and resolve_index_path(root) != target.resolve():  # never made current
                shutil.rmtree(target, ignore_errors=True)
            raise
    return target
