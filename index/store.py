"""Index directories: written whole beside the target and swapped in, so a failure never loses an index.

Layout of DIR:
  manifest.json          format version, encoders, counts, factory strings, creation time
  products.parquet       product ids and metadata; row r <-> vector id r
  <space>.faiss          FAISS index of one space ("text", "image"; "colour": a colour descriptor per photo);
                         not written for exact (Flat) spaces, whose index is built from the vectors at load,
                         so each vector is stored once (older directories hold both and load as before)
  <space>.vectors.npy    the raw normalised embeddings (reused for lookups by id and for re-training)
  <space>.rows.npy       the product row of each embedding (repeated where a product holds several images)
  <space>.ordinals.npy   the image ordinal of each embedding within its product (only where products hold several)
  lexical/               the BM25 index over the product text (bm25s files); settings in the manifest
  encoders/<role>/       exported ONNX encoders ("text", "image", "image-text"), so searching needs no export
  content.parquet        product texts and content hashes (index.content; written by `vitrina reindex`)
  groups.npy             the group id of each product row, on indexes built with a group field (engine.build.groups)
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Collection, Iterator

import numpy as np

from vitrina.index.config import IndexConfig
from vitrina.index.content import CONTENT_FILE, ProductContent
from vitrina.index.dense_batch import matmul_top_k
from vitrina.index.errors import IndexStoreError
from vitrina.encoders.files import (CHECKSUM_FILE, clean_leftovers, copy_file, copy_tree, digest_file, digest_tree,
                             leftover_name, mismatches, read_checksums, write_checksums)
from vitrina.index.lexical import LexicalIndex
from vitrina.index.locks import folder_lock
from vitrina.index.manifest import MANIFEST_FILE, IndexManifest, SpaceInfo
from vitrina.index.product_index import FLAT_FACTORY, ProductIndex
from vitrina.index.products import ProductTable
from vitrina.index.settings import SETTINGS_DIR, read_settings, write_settings
from vitrina.index.synonyms import SYNONYMS_FILE, Synonyms
from vitrina.index.versions import resolve_index_path
from vitrina.errors import Param

PRODUCTS_FILE = "products.parquet"
GROUPS_FILE = "groups.npy"
ORDINALS = "ordinals"  # <space>.ordinals.npy: the image ordinal of each vector, where products hold several images
EVENTS_DIR = "events"  # a plain index directory's shoppers' event log (engine.event_store)
LEXICAL_DIR = "lexical"
ENCODERS_DIR = "encoders"
STORED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))  # <space>.vectors.npy (IndexConfig.vector_dtype)
EXACT_FILTER_MAX = 2048  # a filter allowing at most this many products is searched exactly on ANN indexes
log = logging.getLogger("vitrina")


@dataclass
class VectorSpace:
    """One modality's vectors, the product rows they belong to, and the index over them.

    A product may hold several vectors in an image-derived space (several images per product): `rows`
    then repeats its row and `ordinals` says which of its catalog images each vector is. Searches score a
    product by its best vector (max-pool); where one vector per product is needed (`vector_of_row`,
    `vectors_of_rows`, `product_vectors`), it is the normalised mean of its vectors.
    """

    index: ProductIndex
    vectors: np.ndarray
    rows: np.ndarray
    ordinals: np.ndarray | None = None  # image ordinal (within its product) of each vector; None: all 0
    dtype: str = "float32"  # how the vectors are stored on disk ("float16": IndexConfig.vector_dtype)

    @cached_property
    def per_product(self) -> int:
        """The most vectors any one product holds here (1 for single-image spaces)."""
        if not len(self.rows):
            return 1
        return int(np.bincount(np.asarray(self.rows, dtype=np.int64)).max())

    @property
    def multi(self) -> bool:
        """Whether some product holds several vectors (several images)."""
        return self.per_product > 1

    def ordinal_of(self, position: int) -> int:
        """The image ordinal of the vector at `position` (0 where ordinals are not stored)."""
        return 0 if self.ordinals is None else int(self.ordinals[position])

    def positions_of_row(self, row: int) -> np.ndarray:
        """Positions of a product row's vectors, in image order (empty when it has none)."""
        return np.asarray(self._all_positions.get(int(row), ()), dtype=np.int64)

    def vector_of_row(self, row: int) -> np.ndarray | None:
        """The product's vector: its stored one, or the normalised mean of its images' vectors; None when it has none."""
        positions = self._all_positions.get(int(row))
        if not positions:
            return None
        if len(positions) == 1:
            return np.asarray(self.vectors[positions[0]], dtype=np.float32)
        return _normalised_mean(np.asarray(self.vectors[positions], dtype=np.float32))

    def vectors_of_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors (as `vector_of_row`) of those product rows that have one here, and a mask of which rows do."""
        if not self.multi:
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
            table = self._position_of_row
            inside = (rows >= 0) & (rows < len(table))
            positions = np.full(len(rows), -1, dtype=np.int64)
            positions[inside] = table[rows[inside]]
            found = positions >= 0
            return np.asarray(self.vectors[positions[found]], dtype=np.float32), found  # (0, dim) when none
        vectors = [self.vector_of_row(int(r)) for r in rows]
        found = np.array([v is not None for v in vectors], dtype=bool)
        kept = [v for v in vectors if v is not None]
        return (np.stack(kept) if kept else np.zeros((0, self.vectors.shape[1]), dtype=np.float32)), found

    def product_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """One vector per product that has any (normalised mean of its images' vectors) and their rows, ascending."""
        if not self.multi:
            return np.asarray(self.vectors, dtype=np.float32), np.asarray(self.rows, dtype=np.int64)
        rows = np.unique(np.asarray(self.rows, dtype=np.int64))
        return self.vectors_of_rows(rows)[0], rows

    def scores_of(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Inner product of `vector` with each product row's best vector here; NaN where a row has none."""
        out = np.full(len(rows), np.nan, dtype=np.float64)
        query = np.asarray(vector, dtype=np.float32)
        if not self.multi:
            stored, found = self.vectors_of_rows(rows)
            # row by row (einsum, not BLAS): a row's score must not depend on which other rows are scored with it,
            # or pages and depths of one search could disagree in the last bits
            out[found] = np.einsum("ij,j->i", stored, query)
            return out
        for i, row in enumerate(rows):
            positions = self._all_positions.get(int(row))
            if positions:
                out[i] = float((np.asarray(self.vectors[positions], dtype=np.float32) @ query).max())
        return out

    def best_image(self, queries: np.ndarray, row: int) -> tuple[float, int] | None:
        """(score, image ordinal) of the product's image that best matches any of `queries` (max over pairs)."""
        positions = self._all_positions.get(int(row))
        if not positions:
            return None
        sims = np.atleast_2d(np.asarray(queries, dtype=np.float32)) @ np.asarray(self.vectors[positions], dtype=np.float32).T
        best = int(np.argmax(sims.max(axis=0)))
        return float(sims[:, best].max()), self.ordinal_of(positions[best])

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query, only among `allowed` product rows when a mask is given.

        The filter runs inside the FAISS search (an IDSelector). On an approximate index, a filter
        that allows at most EXACT_FILTER_MAX products is answered exactly over them instead (cheaper
        and never short), and a query for which FAISS finds fewer than k allowed products is redone
        that way, so k hits come back whenever k allowed products have vectors here. Where products
        hold several vectors, k x (most vectors per product) are fetched and each product keeps its best.
        """
        if not self.multi:
            return self._search(queries, k, allowed)
        return best_per_row(*self._search(queries, k * self.per_product, allowed), k)

    def search_pooled(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) of one product queried by several vectors (its images): a product scores its
        best pair. Each query's own top-k holds every product of the pooled top-k, so this is exact."""
        scores, rows = self.search(queries, k, allowed)
        return best_per_row(scores.reshape(1, -1), rows.reshape(1, -1), k)

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            return self.index.search(queries, k)
        allowed = np.asarray(allowed, dtype=bool)
        reachable = np.flatnonzero(allowed[self.rows])  # positions of the allowed products' vectors
        if not self.index.is_exact and len(reachable) <= EXACT_FILTER_MAX:
            return self._exact(queries, reachable, k)
        scores, rows = self.index.search(queries, k, allowed)
        if self.index.is_exact:
            return scores, rows
        short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, len(reachable)))
        if len(short):
            scores[short], rows[short] = self._exact(np.asarray(queries)[short], reachable, k)
        return scores, rows

    def _exact(self, queries: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.asarray(self.vectors[positions], dtype=np.float32)
        return matmul_top_k(queries, vectors, self.rows[positions], k)

    @cached_property
    def _position_of_row(self) -> np.ndarray:
        """Product row -> position of its vector, -1 where it has none (single-vector spaces). An array, not a
        dict: building a dict of 55k rows cost the first hybrid search of a process 20-60 ms."""
        rows = np.asarray(self.rows, dtype=np.int64)
        table = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
        table[rows] = np.arange(len(rows), dtype=np.int64)
        return table

    @cached_property
    def _all_positions(self) -> dict[int, list[int]]:
        """Row -> positions of its vectors, in image order."""
        out: dict[int, list[int]] = {}
        order = np.lexsort((self.ordinals, self.rows)) if self.ordinals is not None else np.argsort(self.rows, kind="stable")
        for position in order.tolist():
            out.setdefault(int(self.rows[position]), []).append(position)
        return out


def _normalised_mean(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def best_per_row(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best k distinct rows from (scores, rows) hits (max-pool: a row keeps its best score),
    best first, padded with (-inf, -1)."""
    out_scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    out_rows = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (s, r) in enumerate(zip(scores, rows)):
        valid = r >= 0
        s, r = s[valid], r[valid]
        order = np.lexsort((r, -s))  # best first, ties by row
        _, first = np.unique(r[order], return_index=True)
        keep = order[np.sort(first)][:k]
        out_scores[i, :len(keep)], out_rows[i, :len(keep)] = s[keep], r[keep]
    return out_scores, out_rows


@dataclass
class IndexDirectory:
    manifest: IndexManifest
    products: ProductTable
    spaces: dict[str, VectorSpace]
    lexical: LexicalIndex | None = None
    encoder_dirs: dict[str, Path] = field(default_factory=dict)  # role -> exported model directory to keep
    path: Path | None = None  # where it was loaded from
    content: ProductContent | None = None  # texts and content hashes, row-aligned with products
    settings: dict[str, bytes] = field(default_factory=dict)  # settings/<name> files (index.settings): synonyms, rules
    groups: np.ndarray | None = None  # group id per product row (engine.build.groups); None: not grouped

    @cached_property
    def synonyms(self) -> Synonyms | None:
        """The synonyms stored with the index (settings/synonyms.txt, index.synonyms), or None."""
        source = str((self.path or Path(".")) / SETTINGS_DIR / SYNONYMS_FILE)
        return Synonyms.stored(self.settings, source)

    def encoder_dir(self, role: str) -> Path | None:
        """The exported encoder kept under `role`, if any."""
        return self.encoder_dirs.get(role)

    def attach_encoder(self, role: str, source: Path) -> Path:
        """Copy an exported encoder into this (saved) directory under `role`, replacing any older one."""
        if self.path is None:
            raise IndexStoreError("only a saved index directory can keep encoders")
        target = self.path / ENCODERS_DIR / role
        tmp = target.parent / leftover_name(role, "tmp")
        try:
            digests = _copy_encoder(Path(source), tmp)
            manifest = IndexManifest.load(self.path)  # as on disk now: only the record of this role changes
            manifest.encoder_files[role] = digests
            _replace_file(self.path / MANIFEST_FILE, lambda t: t.write_text(manifest.to_json() + "\n"))
            self.manifest.encoder_files[role] = digests
            replace_directory(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.encoder_dirs[role] = target
        return target

    def check_encoder_files(self, role: str, repair_from: Path | None = None, skip: Collection[str] = ()) -> None:
        """Verify the kept encoder `role` against the sha256 sums the manifest recorded (else its own
        checksum file). Damaged files are repaired from `repair_from` (the ONNX cache entry) when its
        copies match the recorded sums; otherwise IndexStoreError names the damaged file. `skip`: files
        this process will not read (the graphs of other precisions), left to be checked by whoever loads them."""
        kept = self.encoder_dirs.get(role)
        if kept is None:
            return
        recorded = self.manifest.encoder_files.get(role) or read_checksums(kept)
        recorded = {name: digest for name, digest in recorded.items() if name not in skip}
        if not recorded:
            log.info("the ONNX model kept in %s has no recorded checksums (indexed by an older Vitrina)", kept)
            return
        bad = mismatches(kept, recorded)
        if bad and repair_from is not None and _repair(kept, repair_from, bad):
            log.warning("repaired %s in %s from the ONNX cache %s: the file had changed since indexing",
                        ", ".join(name for name, _, _ in bad), kept, repair_from)
            return
        if bad:
            name, expected, found = bad[0]
            what = "is missing" if found == "missing" else f"has sha256 {found[:16]}..., not the {expected[:16]}... recorded"
            raise IndexStoreError(
                f"{kept / name} is damaged: it {what} when the index was written. The encoder file was changed "
                "after indexing; restore it (or delete the folder to export the model again) or re-index"
            )

    def save(self, out: Path) -> None:
        """Write to a sibling temp dir, then swap it in place of `out` (kept intact on any failure)."""
        out = Path(out)
        _refuse_foreign_directory(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)  # killed writers' copies first: they may hold a whole index each
        tmp = out.parent / leftover_name(out.name, "tmp")
        tmp.mkdir()
        try:
            self.products.save(tmp / PRODUCTS_FILE)
            if self.content is not None:
                self.content.save(tmp / CONTENT_FILE)
            if self.groups is not None:
                np.save(tmp / GROUPS_FILE, np.asarray(self.groups, dtype=np.int64))
            for name, space in self.spaces.items():
                if space.index.stores_file:
                    space.index.save(tmp / f"{name}.faiss")
                np.save(tmp / f"{name}.vectors.npy", np.asarray(space.vectors, dtype=space.dtype))
                np.save(tmp / f"{name}.rows.npy", np.asarray(space.rows, dtype=np.int64))
                if space.ordinals is not None:
                    np.save(tmp / f"{name}.{ORDINALS}.npy", np.asarray(space.ordinals, dtype=np.int64))
            if self.lexical is not None:
                self.lexical.save(tmp / LEXICAL_DIR)
                self.manifest.lexical = self.lexical.describe()
            self.manifest.encoder_files = {}
            for role, source in self.encoder_dirs.items():  # private copies (reflinks where possible), checked
                self.manifest.encoder_files[role] = _copy_encoder(Path(source), tmp / ENCODERS_DIR / role)
            write_settings(tmp, self.settings)
            self.manifest.save(tmp)  # last: a directory with a manifest is complete
            replace_directory(tmp, out)
            self.path = out
            self.encoder_dirs = {role: out / ENCODERS_DIR / role for role in self.encoder_dirs}
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno is None or (exc.filename and not str(exc.filename).startswith(str(tmp))):
                raise
            raise OSError(exc.errno, exc.strerror, str(out)) from exc  # the index being written, not its temp name
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: Path, config: IndexConfig | None = None, mmap: bool | None = None) -> "IndexDirectory":
        path = resolve_index_path(path)
        if not path.is_dir():
            raise IndexStoreError(f"index directory not found: {path}")
        manifest = IndexManifest.load(path)
        products = ProductTable.load(path / PRODUCTS_FILE)
        spaces = {name: load_space(path, name, info, config, mmap) for name, info in manifest.spaces.items()}
        if len(products) != manifest.product_count:
            raise IndexStoreError(f"{path}: product table and manifest disagree; the directory is damaged")
        lexical = LexicalIndex.load(path / LEXICAL_DIR, manifest.lexical) if manifest.lexical else None
        if lexical is not None and lexical.count != len(products):
            raise IndexStoreError(f"{path}: the lexical index covers {lexical.count} products, not {len(products)}; re-index it")
        kept = path / ENCODERS_DIR
        encoder_dirs = {d.name: d for d in sorted(kept.iterdir()) if d.is_dir() and not d.name.startswith(".")} if kept.is_dir() else {}
        content = ProductContent.load(path / CONTENT_FILE)
        if content is not None and content.ids != products.ids:
            raise IndexStoreError(f"{path}: {CONTENT_FILE} and {PRODUCTS_FILE} list different products; re-index it")
        groups = _read_npy(path / GROUPS_FILE, mmap=False) if (path / GROUPS_FILE).is_file() else None
        if groups is not None and groups.shape != (len(products),):
            raise IndexStoreError(f"{path / GROUPS_FILE} holds {groups.shape} group ids for {len(products)} products; re-index it")
        directory = cls(manifest, products, spaces, lexical, encoder_dirs, path, content, read_settings(path), groups)
        if lexical is not None:
            lexical.synonyms = directory.synonyms
        return directory


def load_space(path: Path, name: str, info: SpaceInfo, config: IndexConfig | None = None,
               mmap: bool | None = None) -> VectorSpace:
    """One space of an index directory (FAISS index, vectors, rows), checked against its manifest record.

    A space without a `<space>.faiss` file is an exact (Flat) one written by `save`: its index is built from
    the stored vectors when first needed (`ProductIndex.deferred`). A directory that holds the file (any ANN
    index, or a Flat one written by an older Vitrina) loads it as before."""
    vectors, rows = read_vectors(path, name)
    if vectors.shape != (info.count, info.dim):
        raise IndexStoreError(
            f"{path / f'{name}.vectors.npy'} holds {vectors.shape[0]} {vectors.shape[1] if vectors.ndim == 2 else '?'}-d "
            f"vectors but the manifest says {info.count} {info.dim}-d; the directory is damaged, re-index it"
        )
    file = path / f"{name}.faiss"
    if file.is_file() or not rebuilt_at_load(info.factory):
        index = ProductIndex.load(file, info.factory, config, mmap=mmap, tuned=info.tuned_parameters())
    else:
        index = ProductIndex.deferred(vectors, rows, info.factory, config)  # built on its first search
    if index.ntotal != info.count or len(rows) != info.count or index.dim != info.dim:
        raise IndexStoreError(
            f"{path}: the {name} index holds {index.ntotal} {index.dim}-d vectors but the manifest "
            f"says {info.count} {info.dim}-d; the directory is damaged, re-index it"
        )
    return VectorSpace(index, vectors, rows, read_ordinals(path, name, len(rows)), str(vectors.dtype))


def rebuilt_at_load(factory: str) -> bool:
    """Whether a space of this FAISS factory is stored as its vectors alone (its index built at load)."""
    return factory.strip() == FLAT_FACTORY


def read_ordinals(path: Path, name: str, count: int) -> np.ndarray | None:
    """The image ordinal of each vector of a space whose products hold several images; None when not stored."""
    file = path / f"{name}.{ORDINALS}.npy"
    if not file.is_file():
        return None
    ordinals = _read_npy(file, mmap=False)
    if ordinals.shape != (count,):
        raise IndexStoreError(f"{file} holds {ordinals.shape} image ordinals for {count} vectors; the directory is damaged, "
                              "re-index it")
    return ordinals


def read_vectors(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One space's stored embeddings (memory-mapped) and the product row of each; IndexStoreError names
    a missing, truncated or malformed file."""
    vectors = _read_npy(path / f"{name}.vectors.npy", mmap=True)
    rows = _read_npy(path / f"{name}.rows.npy", mmap=False)
    if vectors.dtype not in STORED_DTYPES:
        raise IndexStoreError(f"{path / f'{name}.vectors.npy'} holds {vectors.dtype} vectors, not float32 or float16; "
                              "the directory is damaged, re-index it")
    if vectors.ndim != 2 or rows.ndim != 1 or len(vectors) != len(rows):
        raise IndexStoreError(
            f"{path}: {name}.vectors.npy holds {vectors.shape} but {name}.rows.npy {rows.shape}; they must pair up "
            "one row per vector. The directory is damaged, re-index it"
        )
    return vectors, rows


def stored_vector_dtype(path: Path) -> str | None:
    """How an index directory stores its vectors ("float32" or "float16": its text space's, else its first
    space's), or None when it has none readable."""
    files = sorted(Path(path).glob("*.vectors.npy"), key=lambda f: (f.name != "text.vectors.npy", f.name))
    for file in files:
        try:
            dtype = np.load(file, mmap_mode="r", allow_pickle=False).dtype
        except (ValueError, OSError, EOFError):
            continue
        if dtype in STORED_DTYPES:
            return str(dtype)
    return None


def _read_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise IndexStoreError(f"{path} is missing; the index directory is damaged, re-index it")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated ("mmap length is greater than file size"), not .npy
        raise IndexStoreError(f"{path} is damaged (truncated or not a .npy array: {exc}); re-index it") from None


def _copy_encoder(source: Path, target: Path) -> dict[str, str]:
    """Copy an exported encoder privately; its sha256 sums (checked against the source's checksum file
    when it has one, so a damaged model is never copied on), also written into the copy."""
    if not source.is_dir():
        raise IndexStoreError(f"the exported encoder {source} is missing")
    copy_tree(source, target)
    digests = digest_tree(target)
    recorded = read_checksums(source)
    if recorded:
        bad = [(name, h) for name, h in recorded.items() if digests.get(name) != h]
        if bad:
            raise IndexStoreError(
                f"{source / bad[0][0]} is damaged: its sha256 differs from the one recorded in "
                f"{source / CHECKSUM_FILE} when it was exported; delete {source} to export the model again"
            )
    write_checksums(target, digests)
    return digests


def _repair(kept: Path, source: Path, bad: list[tuple[str, str, str]]) -> bool:
    """Replace the damaged files of `kept` with those of `source`, if `source`'s match the recorded sums."""
    try:
        if any(digest_file(source / name) != expected for name, expected, _ in bad):
            return False
        for name, _, _ in bad:
            _replace_file(kept / name, lambda tmp, n=name: copy_file(source / n, tmp))
    except OSError as exc:
        log.warning("could not repair %s from %s: %s", kept, source, exc)
        return False
    return True


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@contextmanager
def editing(path: Path) -> Iterator[Path]:
    """A copy of index directory `path` to change, swapped in place of `path` when the block succeeds.

    Files are hard links to the originals (no space, no time), so a writer must never change a file
    in place: write a new file and `os.replace` it over the old name (`write_space`, `write_manifest`
    and `replace_directory` do). On any failure the copy is removed and `path` is untouched.
    The links need no copy-on-write protection: they last only while the edit runs (the old directory
    is deleted once the copy is swapped in, and a killed edit's copy is cleaned by the next write), so
    no two live indexes share an inode. Versions, indexes and the ONNX cache, which do live side by
    side, never share files: `save` copies encoders (reflinks where possible) and rewrites the rest.
    """
    path = resolve_index_path(path)  # a versioned root: its current version
    IndexManifest.load(path)  # refuse anything that is not an index
    clean_leftovers(path)
    # A plain index keeps its shoppers' event log in DIR/events (engine.event_store): hold the log's lock
    # from the copy to the swap, so no event is appended into the gap and no rewrite is undone by the swap.
    guard = folder_lock(path / EVENTS_DIR) if (path / EVENTS_DIR).is_dir() else nullcontext()
    with guard:
        tmp = path.parent / leftover_name(path.name, "edit")
        shutil.copytree(path, tmp, copy_function=_link_or_copy)
        try:
            yield tmp
            replace_directory(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_file(target: Path, write) -> None:
    """Write through `write(temp path)`, then rename over `target` (hard-linked originals stay intact)."""
    clean_leftovers(target)
    tmp = target.parent / leftover_name(target.name, "tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_space(directory: Path, name: str, space: VectorSpace) -> None:
    """Write one vector space's files into an index directory being edited (see `editing`)."""
    if space.index.stores_file:
        _replace_file(directory / f"{name}.faiss", space.index.save)
    else:  # an exact index is built from the vectors at load; an older directory's copy would go stale
        (directory / f"{name}.faiss").unlink(missing_ok=True)
    for suffix, array in (("vectors", np.asarray(space.vectors, dtype=space.dtype)), ("rows", np.asarray(space.rows, dtype=np.int64))):
        _replace_file(directory / f"{name}.{suffix}.npy", lambda tmp, a=array: _save_npy(tmp, a))
    if space.ordinals is not None:
        ordinals = np.asarray(space.ordinals, dtype=np.int64)
        _replace_file(directory / f"{name}.{ORDINALS}.npy", lambda tmp: _save_npy(tmp, ordinals))
    else:
        (directory / f"{name}.{ORDINALS}.npy").unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save would add ".npy" to a temp name
        np.save(f, array)


def remove_space(directory: Path, name: str) -> None:
    for suffix in ("faiss", "vectors.npy", "rows.npy", f"{ORDINALS}.npy"):
        (directory / f"{name}.{suffix}").unlink(missing_ok=True)


def write_manifest(directory: Path, manifest: IndexManifest) -> None:
    """Write the manifest of an index directory being edited, with a new version."""
    manifest.stamp()
    _replace_file(directory / MANIFEST_FILE, lambda tmp: tmp.write_text(manifest.to_json() + "\n"))


def _refuse_foreign_directory(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise IndexStoreError("{out} is a file, not a directory", out=Param("path", out))
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise IndexStoreError(
            "{out} is a non-empty directory that is not a Vitrina index; refusing to replace it",
            out=Param("path", out)
        )


def replace_directory(tmp: Path, out: Path) -> None:
    """Put directory `tmp` at `out` by renames; an old `out` is restored if the swap fails, else deleted.
    Then the leftovers of killed writers beside `out` (`.OUT.tmp-*`, `.old-*`, `.edit-*`) go."""
    if not out.exists():
        os.replace(tmp, out)
    else:
        old = out.parent / leftover_name(out.name, "old")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    clean_leftovers(out)
