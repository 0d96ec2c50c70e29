"""Changing single products of a versioned root without re-indexing the catalog: upsert and delete.

Each change writes a new version beside the live one and publishes it like a re-index (atomic switch
of `current`, the last versions kept). Only the products given are encoded, and of those only the
ones whose text or image bytes changed; every other vector is copied from the live version, and the
FAISS indexes are refilled with their trained structures (no k-means, no re-tuning).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders.colour import COLOUR_SPACE
from vitrina.engine.data.catalog import CatalogSource, Product, read_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import CatalogError
from vitrina.engine.build.assemble import image_roots, image_url_rules, recorded_image_roots, stored_ordinals
from vitrina.engine.build.encode import Encoders, ModelSpecs, Previous, executor_for
from vitrina.engine.build.groups import Grouping, attach_groups, check_upserted
from vitrina.engine.build.pipeline import ReindexConfig, publish_version, root_lock
from vitrina.engine.build.shards import Shard
from vitrina.index import IndexDirectory, LexicalIndex, ProductTable, VectorSpace
from vitrina.index.content import CONTENT_FILE, ProductContent
from vitrina.index.errors import IndexStoreError
from vitrina.index.versions import is_versioned_root

CARRIED_SPACES = ("text", "image", COLOUR_SPACE)  # trained spaces (fused, shared-image) are recomputed by engine.carry_over


@dataclass
class UpdateReport:
    root: Path
    version: str
    path: Path
    products: int  # in the new version
    added: int
    updated: int  # given again, with new content or metadata
    unchanged: int  # given again with the same text and image (vectors kept; metadata refreshed)
    deleted: int
    not_found: list[str] = field(default_factory=list)  # delete: ids the index did not have
    encoded: dict[str, int] = field(default_factory=dict)
    images_failed: int = 0
    dropped_spaces: list[str] = field(default_factory=list)  # empty when the trained spaces were carried over
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # behaviour and trained heads carried over, or why not

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["root"], out["path"] = str(self.root), str(self.path)
        out["not_found"] = self.not_found[:100]
        return out


def _live(root: Path, config: VitrinaConfig) -> IndexDirectory:
    if not is_versioned_root(root):
        raise IndexStoreError(
            f"{root} is not a versioned index root; upsert and delete change roots made by `vitrina reindex CATALOG --out {root}`"
        )
    live = IndexDirectory.load(root, config.index)
    if live.content is None:
        raise IndexStoreError(f"{live.path} has no product content ({CONTENT_FILE}); re-index it with `vitrina reindex`")
    return live


def upsert(root: str | Path, catalog: CatalogSource, config: VitrinaConfig | None = None,
           settings: ReindexConfig | None = None, retrain: bool = False) -> UpdateReport:
    """Add the catalog's products (a file, or records: dicts, a pyarrow Table or a pandas DataFrame) to the
    live version, or replace those with the same id."""
    config = config or VitrinaConfig()
    settings = settings or ReindexConfig()
    root = Path(root)
    started = time.perf_counter()
    with root_lock(root):
        live = _live(root, config)
        catalog = read_catalog(catalog, config.catalog)
        check_upserted(Grouping.from_record(live.manifest.catalog.get("groups")), [p.metadata for p in catalog.products],
                       catalog.origin.label)
        config = replace(config, images=config.images.for_catalog(catalog.origin.image_dir))
        manifest = live.manifest
        manifest.catalog["image_roots"] = image_roots(config, recorded_image_roots(manifest.catalog))
        manifest.catalog["image_urls"] = image_url_rules(config, manifest.catalog.get("image_urls"))
        images = "image" in manifest.spaces and catalog.fields.image_field
        encoders = Encoders.load(ModelSpecs(manifest.space("text").model,
                                            manifest.spaces["image"].model if images else None), config)
        if COLOUR_SPACE not in manifest.spaces:  # indexed before colour descriptors: `vitrina reindex` adds them
            encoders.colour = None
        for space, encoder in (("text", encoders.text), ("image", encoders.image)):
            if encoder is not None:
                manifest.check_encoder(space, encoder.name, encoder.dim)
        executor = executor_for(settings.engine, encoders, config, Previous.of_directory(live, encoders.names),
                                settings.decode_threads, settings.ray_actors)
        bars = {"decode": tqdm(total=None, desc="decode", unit="image", disable=not config.progress)}
        try:
            shard = executor.encode(0, catalog.products, bars)
        finally:
            executor.close()
            bars["decode"].close()
        known = live.products
        given = {p.id for p in catalog.products}
        old_content = live.content
        changed = sum(
            1 for p, th, ih in zip(catalog.products, shard.text_hashes, shard.image_hashes)
            if p.id in known and (th, ih) != _hashes_of(old_content, known.row_of(p.id))
        )
        existing = sum(1 for p in catalog.products if p.id in known)
        keep = [row for row, pid in enumerate(known.ids) if pid not in given]
        version_dir, directory, dropped, notes = _publish_refilled(root, live, keep, catalog.products, shard, settings.keep,
                                                                   config, retrain, encoders.names[COLOUR_SPACE])
    return UpdateReport(root, directory.manifest.version, version_dir, len(directory.products),
                        added=len(catalog.products) - existing, updated=changed, unchanged=existing - changed, deleted=0,
                        encoded={"text": shard.encoded_text, "image": shard.encoded_images},
                        images_failed=len(shard.failures), dropped_spaces=dropped,
                        seconds=round(time.perf_counter() - started, 3), notes=notes)


def delete(root: str | Path, ids: str | Path | Iterable[str], config: VitrinaConfig | None = None,
           settings: ReindexConfig | None = None, retrain: bool = False) -> UpdateReport:
    """Remove products from the live version: `ids` is an id file (one id per line; a str is a path) or the ids."""
    config = config or VitrinaConfig()
    settings = settings or ReindexConfig()
    root = Path(root)
    started = time.perf_counter()
    source = str(Path(ids)) if isinstance(ids, (str, os.PathLike)) else "ids"
    ids = read_ids(Path(ids)) if isinstance(ids, (str, os.PathLike)) else checked_ids(ids)
    with root_lock(root):
        live = _live(root, config)
        known = live.products
        not_found = [pid for pid in ids if pid not in known]
        doomed = set(ids) - set(not_found)
        if not doomed:  # nothing to change: no new version
            return UpdateReport(root, live.manifest.version, live.path, len(known), added=0, updated=0, unchanged=0,
                                deleted=0, not_found=not_found, seconds=round(time.perf_counter() - started, 3))
        if len(doomed) == len(known):
            raise CatalogError(f"{source}: deleting every product would leave an empty index; re-index instead")
        keep = [row for row, pid in enumerate(known.ids) if pid not in doomed]
        version_dir, directory, dropped, notes = _publish_refilled(root, live, keep, [], None, settings.keep, config, retrain)
    return UpdateReport(root, directory.manifest.version, version_dir, len(directory.products), added=0, updated=0,
                        unchanged=0, deleted=len(doomed), not_found=not_found, dropped_spaces=dropped,
                        seconds=round(time.perf_counter() - started, 3), notes=notes)


def read_ids(path: Path) -> list[str]:
    """Product ids, one per line (blank lines and lines starting with # are skipped)."""
    if not path.is_file():
        raise CatalogError(f"id file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise CatalogError(f"{path}: no product ids (expected one id per line)")
    return list(dict.fromkeys(ids))


def checked_ids(ids: Iterable[str]) -> list[str]:
    """Product ids given in Python, each a non-empty string (surrounding blanks dropped, as in an id file)."""
    if isinstance(ids, (bytes, bytearray, Mapping)) or not isinstance(ids, Iterable):
        raise CatalogError(f"ids: expected an id file or a list of product ids, got {type(ids).__name__}")
    checked = []
    for number, pid in enumerate(ids):
        if not isinstance(pid, str):
            raise CatalogError(f"ids, item {number}: a product id is a string, got {type(pid).__name__} {pid!r}")
        if not pid.strip():
            raise CatalogError(f"ids, item {number}: the product id is empty")
        checked.append(pid.strip())
    if not checked:
        raise CatalogError("ids: no product ids (the list is empty)")
    return list(dict.fromkeys(checked))


def _hashes_of(content: ProductContent, row: int) -> tuple[str, str]:
    return content.text_hashes[row], content.image_hashes[row]


def _added_vectors(name: str, shard: Shard | None, dim: int, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The new vectors of space `name`, their product rows (the added products start at row `base`) and image ordinals."""
    if shard is None or (name != "text" and not len(shard.image_positions)):  # none added (or none has a photo)
        return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if name == "text":
        return shard.text, np.arange(base, base + len(shard), dtype=np.int64), np.zeros(len(shard), dtype=np.int64)
    return (shard.colour if name == COLOUR_SPACE else shard.image), shard.image_positions + base, shard.ordinals()


def _publish_refilled(root: Path, live: IndexDirectory, keep: list[int], added: Sequence[Product], shard: Shard | None,
                      keep_versions: int, config: VitrinaConfig, retrain: bool = False, colour_name: str = ""
                      ) -> tuple[Path, IndexDirectory, list[str], list[str]]:
    """Write and publish a new version: the live products at rows `keep` (renumbered in order), then the
    `added` products, whose vectors and hashes are in `shard` (None when nothing is added); behaviour and
    trained spaces carried over. Returns the version, its directory, the spaces dropped and notes."""
    keep_rows = np.asarray(keep, dtype=np.int64)
    renumber = np.full(len(live.products), -1, dtype=np.int64)
    renumber[keep_rows] = np.arange(len(keep_rows))
    base = len(keep_rows)
    spaces: dict[str, VectorSpace] = {}
    infos = {}
    for name in CARRIED_SPACES:
        if name not in live.spaces:
            continue
        if name == COLOUR_SPACE and shard is not None and len(shard.image_positions) and (
                shard.colour.shape[1] != live.manifest.spaces[name].dim or colour_name != live.manifest.spaces[name].encoder):
            continue  # the new photos' descriptors were made another way (or not at all): dropped, `vitrina reindex` remakes them
        old = live.spaces[name]
        old_rows = np.asarray(old.rows)
        kept = np.flatnonzero(renumber[old_rows] >= 0)
        new_vectors, new_rows, new_ordinals = _added_vectors(name, shard, live.manifest.spaces[name].dim, base)
        vectors = np.concatenate([np.asarray(old.vectors[kept], dtype=np.float32), np.asarray(new_vectors, dtype=np.float32)])
        rows = np.concatenate([renumber[old_rows[kept]], np.asarray(new_rows, dtype=np.int64)])
        old_ordinals = np.zeros(len(old_rows), dtype=np.int64) if old.ordinals is None else np.asarray(old.ordinals)
        ordinals = np.concatenate([old_ordinals[kept], new_ordinals])
        if not len(rows):
            continue
        spaces[name] = VectorSpace(old.index.refilled(vectors, rows), vectors, rows, stored_ordinals(ordinals),
                                   old.dtype)  # stored as before (float16 stays float16)
        infos[name] = live.manifest.spaces[name]
        infos[name].count = len(rows)
    new_content = ProductContent([p.id for p in added], [p.text for p in added],
                                 shard.text_hashes if shard else [], shard.image_hashes if shard else [])
    content = live.content.take(keep) + new_content
    table = _table(live.products, keep, new_content.ids, [p.metadata for p in added])
    lexical = None
    if live.lexical is not None:
        lexical = LexicalIndex.build(content.texts, live.lexical.settings)
    manifest = live.manifest
    manifest.spaces = infos
    manifest.product_count = len(content)
    directory = IndexDirectory(manifest, table, spaces, lexical, dict(live.encoder_dirs), content=content)
    attach_groups(directory)  # the live version's grouping, over the new products
    published = publish_version(root, live.path, directory, config, retrain, keep_versions)
    dropped = sorted(set(live.spaces) - set(directory.spaces))
    return published.path, directory, dropped, published.notes


def _table(products: ProductTable, keep: list[int], ids: list[str], metadata: list[dict]) -> ProductTable:
    records_ids = [products.ids[r] for r in keep] + list(ids)
    records = [products.metadata(r) for r in keep] + list(metadata)
    return ProductTable.from_records(records_ids, records)

