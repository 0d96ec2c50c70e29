"""Index settings files: small files a shop edits (synonyms, merchandising rules) kept in an index directory
under `settings/<name>`, read with the index and written only by writing a whole new directory or version
(engine.build.settings publishes a version of a versioned root with one of them changed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from vitrina.index.errors import IndexStoreError
from vitrina.index.versions import resolve_index_path

SETTINGS_DIR = "settings"
MAX_SETTING_BYTES = 16 * 1024 * 1024  # one settings file; a synonyms or rules file of a big shop is well under 1 MiB
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_setting_name(name: str) -> str:
    """`name` when it is a plain file name (letters, digits, `.`, `_`, `-`; no folders, not hidden)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise IndexStoreError(f"{name!r} is not a settings file name (letters, digits, '.', '_' and '-', "
                              "not starting with '.')")
    return name


def check_setting_data(name: str, data: bytes) -> bytes:
    """`data` when it is bytes of at most MAX_SETTING_BYTES."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IndexStoreError(f"settings file {name}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_SETTING_BYTES:
        raise IndexStoreError(f"settings file {name} is {len(data):,} bytes; at most {MAX_SETTING_BYTES:,} are kept "
                              "with an index")
    return data


def read_setting(directory_path: str | Path, name: str) -> bytes | None:
    """The bytes of settings file `name` of an index directory (or a versioned root's current version); None
    where it has none."""
    path = resolve_index_path(directory_path) / SETTINGS_DIR / check_setting_name(name)
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError as exc:
        raise IndexStoreError(f"cannot read the index settings file {path}: {exc.strerror or exc}") from None


def read_settings(directory_path: str | Path) -> dict[str, bytes]:
    """Every settings file of an index directory, by name (empty where it has none)."""
    folder = resolve_index_path(directory_path) / SETTINGS_DIR
    if not folder.is_dir():
        return {}
    return {p.name: read_setting(folder.parent, p.name) or b""
            for p in sorted(folder.iterdir()) if p.is_file() and _NAME.fullmatch(p.name)}


def write_settings(directory: Path, settings: Mapping[str, bytes]) -> None:
    """Write `settings` into `directory`, an index directory being built (not yet published or swapped in)."""
    if not settings:
        return
    folder = Path(directory) / SETTINGS_DIR
    folder.mkdir(exist_ok=True)
    for name, data in settings.items():
        (folder / check_setting_name(name)).write_bytes(check_setting_data(name, data))
