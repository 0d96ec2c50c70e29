"""A plain index directory (`vitrina index`) turned into a versioned root in place, so it can take upserts
and deletes: the index becomes the root's first version."""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path

from vitrina.encoders.files import copy_tree, leftover_name
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import join_text, metadata_key
from vitrina.index import IndexDirectory
from vitrina.index.content import CONTENT_FILE, ProductContent, content_hash
from vitrina.index.locks import folder_lock
from vitrina.index.store import EVENTS_DIR, replace_directory
from vitrina.index.versions import CURRENT, VERSIONS_DIR, is_versioned_root, resolve_index_path


def derived_content(directory: IndexDirectory) -> ProductContent:
    """The product texts of an index built without them (`vitrina index`), rebuilt from its stored
    catalog columns as the catalog reader joins them; image hashes unknown (an upserted product's image
    is then encoded again)."""
    catalog = directory.manifest.catalog
    id_field, fields = catalog.get("id_field"), catalog.get("text_fields") or []
    products = directory.products
    texts = []
    for row, pid in enumerate(products.ids):
        metadata = products.metadata(row)
        texts.append(join_text([pid if f == id_field else metadata.get(metadata_key(f)) for f in fields]))
    return ProductContent(list(products.ids), texts, [content_hash(t) for t in texts], [""] * len(texts))


def versioned_in_place(path: Path, config: VitrinaConfig | None = None) -> None:
    """Turn the plain index directory `path` into a versioned root whose first version is that index.

    The root is assembled beside `path` (the index copied into versions/VERSION, its event log moved
    up to the root, `current` linked) and swapped in by renames: on any failure `path` is untouched.
    """
    path = Path(path)
    if is_versioned_root(path):
        return
    directory = IndexDirectory.load(path, (config or VitrinaConfig()).index)
    staging = path.parent / leftover_name(path.name, "tmp")
    events = path / EVENTS_DIR
    with folder_lock(events) if events.is_dir() else nullcontext():  # no event lands between copy and swap
        try:
            version_dir = staging / VERSIONS_DIR / directory.manifest.version
            copy_tree(path, version_dir)
            if (version_dir / EVENTS_DIR).is_dir():
                os.replace(version_dir / EVENTS_DIR, staging / EVENTS_DIR)
            if directory.content is None:
                derived_content(directory).save(version_dir / CONTENT_FILE)
            os.symlink(Path(VERSIONS_DIR) / version_dir.name, staging / CURRENT)
            replace_directory(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    resolve_index_path(path)  # a clear error now if the result is not a complete root
