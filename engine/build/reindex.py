"""Bulk re-indexing into a versioned root: streamed, sharded, resumable, published atomically.

    catalog --read--> shards of `shard_size` products --decode--> images (a thread pool, ahead of the
    encoder) --encode--> shard files (the checkpoint) --index--> FAISS (+ tuning) and BM25 in a new
    version directory --publish--> the `current` link renamed onto it; the oldest versions pruned.

Products whose text (or image bytes) hash the same as in the live version keep its vectors instead of
being encoded again. A crash anywhere leaves the live version untouched; `resume=True` continues from
the shard files already written, and the result is identical to an uninterrupted run (same shards,
same batches, same deterministic FAISS training).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders import Encoder, ImageLoadError, load_image_encoder, load_text_encoder
from vitrina.encoders.factory import NO_IMAGE_MODEL
from vitrina.encoders.image_io import decode_image, read_image_bytes
from vitrina.engine import __version__
from vitrina.engine.data.catalog import CatalogOrigin, CatalogSource, CatalogStream, Product, stream_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import CatalogError
from vitrina.engine.build.indexing import absolute_spec, describe_runtime, encode_texts, exported_dirs, image_roots, image_url_rules
from vitrina.engine.build.shards import Shard, ShardStore
from vitrina.index import IndexDirectory, IndexManifest, LexicalIndex, ProductIndex, ProductTable, SpaceInfo, VectorSpace
from vitrina.index.content import CONTENT_FILE, ProductContent, content_hash
from vitrina.index.errors import IndexStoreError
from vitrina.index.store import read_vectors
from vitrina.index.tuning import tune_search
from vitrina.index.versions import check_root, clean_builds, is_versioned_root, publish, resolve_index_path, staging_dir

WORK_DIR = ".reindex"
LOCK_FILE = ".lock"
ENGINES = ("local", "ray")
StageHook = Callable[[str, int], None]  # (stage, shard number or -1): called after each step, for tests and callers
AUTO_SHARDS = 20  # automatic shard size: a twentieth of the catalog, so a resume redoes at most ~5% of the work
AUTO_SHARD_MIN = 200  # products; smaller catalogs take seconds, where shards would only add overhead
AUTO_SHARD_MAX = 5_000  # products; about a minute of text and image encoding on a CPU


@dataclass(frozen=True)
class ReindexConfig:
    """How a re-index runs. keep: versions kept (the current one always stays)."""

    shard_size: int | None = None  # products per checkpointed shard; None: automatic (`shard_size_for`)
    keep: int = 3
    engine: str = "local"  # "local" or "ray" (the encode stage on a Ray cluster)
    target_recall: float = 0.95  # recall@10 that nprobe/efSearch are tuned to on approximate indexes
    decode_threads: int = max(2, min(8, os.cpu_count() or 2))
    ray_actors: int | None = None  # encoder actors on Ray (None: one per GPU, else 2)

    def __post_init__(self) -> None:
        if self.shard_size is not None and self.shard_size < 1:
            raise CatalogError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.keep < 1:
            raise CatalogError(f"--keep must be at least 1, got {self.keep}")
        if self.engine not in ENGINES:
            raise CatalogError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    def shard_size_for(self, total: int | None) -> int:
        """The shard size given, else 1/AUTO_SHARDS of `total` products within [AUTO_SHARD_MIN, AUTO_SHARD_MAX]."""
        if self.shard_size is not None:
            return self.shard_size
        if total is None:
            return AUTO_SHARD_MAX
        return max(AUTO_SHARD_MIN, min(AUTO_SHARD_MAX, -(-total // AUTO_SHARDS)))


@dataclass
class ReindexReport:
    root: Path
    version: str
    path: Path  # the published version directory
    products: int
    shards: int
    resumed_shards: int  # shards found done from an interrupted run
    encoded: dict[str, int]  # space -> products this job encoded (shards done before a resume included)
    reused: dict[str, int]  # space -> vectors kept from the previous live version (content unchanged)
    images_failed: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    tuning: dict[str, dict] = field(default_factory=dict)  # space -> index.tuning.Tuning
    removed_versions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # behaviour and trained heads carried over, or why not

    def to_json(self) -> dict:
        out = asdict(self)
        out["root"], out["path"] = str(self.root), str(self.path)
        out["failures"] = [{"id": pid, "reason": why} for pid, why in self.failures[:100]]
        return out


@contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """One writer per versioned root: a second re-index, upsert or delete is refused, not interleaved."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexStoreError(f"{root} is being changed by another vitrina process (reindex, upsert or delete); "
                                  "wait for it to finish") from None
        clean_builds(root)  # builds of killed writers (each holds a whole version)
        yield


class Previous:
    """The live version's vectors by product id and content hash, for reusing unchanged products."""

    def __init__(self, manifest: IndexManifest | None, content: ProductContent | None,
                 stored: dict[str, tuple[np.ndarray, np.ndarray]], encoder_names: dict[str, str]) -> None:
        """stored: space -> (vectors, product rows) of the live version."""
        self.lookup: dict[str, dict[str, tuple[str, np.ndarray, int]]] = {"text": {}, "image": {}}  # id -> (hash, vectors, position)
        if manifest is None or content is None:
            return
        for space, hashes in (("text", content.text_hashes), ("image", content.image_hashes)):
            info = manifest.spaces.get(space)
            if space not in stored or info is None or info.encoder != encoder_names.get(space):
                continue  # another model made these vectors: nothing to reuse
            vectors, rows = stored[space]
            for position, row in enumerate(np.asarray(rows).tolist()):
                if hashes[row]:
                    self.lookup[space][content.ids[row]] = (hashes[row], vectors, position)

    @classmethod
    def of_directory(cls, directory: IndexDirectory, encoder_names: dict[str, str]) -> "Previous":
        stored = {name: (space.vectors, space.rows) for name, space in directory.spaces.items()}
        return cls(directory.manifest, directory.content, stored, encoder_names)

    @classmethod
    def of_root(cls, root: Path, encoder_names: dict[str, str]) -> "Previous":
        """The current version of a versioned root (nothing when it has none), read without loading its
        FAISS and BM25 indexes: only the manifest, the content hashes and the memory-mapped vectors."""
        if not is_versioned_root(root):
            return cls(None, None, {}, encoder_names)
        path = resolve_index_path(root)
        manifest = IndexManifest.load(path)
        stored = {name: read_vectors(path, name) for name in ("text", "image") if name in manifest.spaces}
        return cls(manifest, ProductContent.load(path / CONTENT_FILE), stored, encoder_names)

    def digest(self, space: str, product_id: str) -> str:
        """The content hash the live version has for a product's vector in `space` ("" when none)."""
        found = self.lookup[space].get(product_id)
        return found[0] if found is not None else ""

    def vector(self, space: str, product_id: str, digest: str) -> np.ndarray | None:
        """The live vector of the product when its content still hashes to `digest`, else None."""
        found = self.lookup[space].get(product_id)
        if found is None or found[0] != digest:
            return None
        return np.asarray(found[1][found[2]], dtype=np.float32)

    def reuse_texts(self, products: Sequence[Product], dim: int) -> tuple[list[str], np.ndarray, list[int]]:
        """Text hashes, a (n, dim) array holding the live vectors of unchanged texts, and the positions
        of the texts still to encode."""
        hashes = [content_hash(p.text) for p in products]
        vectors = np.zeros((len(products), dim), dtype=np.float32)
        todo = []
        for i, (p, digest) in enumerate(zip(products, hashes)):
            kept = self.vector("text", p.id, digest)
            if kept is None:
                todo.append(i)
            else:
                vectors[i] = kept
        return hashes, vectors, todo


class ShardEncoder:
    """Embeds one shard of products: texts, then images read, hashed and decoded ahead on threads."""

    def __init__(self, text: Encoder, image: Encoder | None, config: VitrinaConfig, settings: ReindexConfig,
                 previous: Previous) -> None:
        self.text, self.image, self.config, self.previous = text, image, config, previous
        self.pool = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="vitrina-decode")
        self.preprocess = getattr(image, "preprocess", None)
        self.images_failed = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, product: Product, bars: dict[str, tqdm]) -> tuple[str, object]:
        """(image hash, pixels / image / None when unchanged, or the ImageLoadError)."""
        enc = self.config.encoders
        try:
            data = read_image_bytes(product.image, enc.image_timeout_s, self.config.images)
            digest = content_hash(data)
            if digest == self.previous.digest("image", product.id):
                return digest, None
            image = decode_image(data, product.image, enc.image_max_pixels, enc.image_max_aspect)
            item = self.preprocess([image])[0] if self.preprocess is not None else image
            return digest, item
        except ImageLoadError as exc:
            return "", exc
        finally:
            bars["decode"].update(1)

    def encode(self, number: int, products: Sequence[Product], bars: dict[str, tqdm]) -> Shard:
        wanted = [i for i, p in enumerate(products) if p.image] if self.image is not None else []
        window = max(4, 4 * self.config.encoders.batch_size)  # images decoded ahead of the encoder, at most
        pending: deque[tuple[int, Future]] = deque()
        queue = iter(wanted)

        def top_up() -> None:
            for i in islice(queue, window - len(pending)):
                pending.append((i, self.pool.submit(self._load, products[i], bars)))

        top_up()  # images start decoding while the texts encode
        text_hashes, text, todo = self.previous.reuse_texts(products, self.text.dim)
        if todo:
            text[todo] = encode_texts(self.text, [products[i].text for i in todo], progress=False)
        image_hashes = [""] * len(products)
        failures: list[tuple[str, str]] = []
        positions: list[int] = []
        image_vectors: list[np.ndarray] = []
        batch: list[tuple[int, object]] = []
        encoded_images = 0

        def flush() -> None:
            nonlocal encoded_images
            if not batch:
                return
            items = [item for _, item in batch]
            vectors = self.image.encode_pixels(np.stack(items)) if self.preprocess is not None else self.image.encode(items)
            for (i, _), vector in zip(batch, vectors):
                positions.append(i)
                image_vectors.append(vector)
            encoded_images += len(batch)
            batch.clear()

        while pending:
            i, future = pending.popleft()
            digest, item = future.result()
            top_up()
            if isinstance(item, ImageLoadError):
                failures.append((products[i].id, str(item)))
                self.images_failed += 1
                bars["decode"].set_postfix(images_failed=self.images_failed, refresh=False)
                continue
            image_hashes[i] = digest
            if item is None:  # unchanged since the live version
                positions.append(i)
                image_vectors.append(self.previous.vector("image", products[i].id, digest))
                continue
            batch.append((i, item))
            if len(batch) >= self.config.encoders.batch_size:
                flush()
        flush()
        order = np.argsort(positions, kind="stable")  # catalog order, however the batches fell
        image_dim = self.image.dim if self.image is not None else 0
        stacked = np.stack(image_vectors)[order] if image_vectors else np.zeros((0, image_dim), dtype=np.float32)
        return Shard(number, [p.id for p in products], text_hashes, image_hashes, text, stacked,
                     np.asarray(positions, dtype=np.int64)[order], failures, len(todo), encoded_images)


def _chunks(products: Iterator[Product], size: int) -> Iterator[list[Product]]:
    while chunk := list(islice(products, size)):
        yield chunk


def _catalog_job(origin: CatalogOrigin) -> dict:
    """The catalog as job.json records it: a file by its path, size and time; records by a digest of their content."""
    if origin.path is None:
        return {"catalog": origin.manifest_source, "catalog_sha256": origin.fingerprint()}
    stat = origin.path.stat()
    return {"catalog": str(origin.path.resolve()), "catalog_size": stat.st_size, "catalog_mtime_ns": stat.st_mtime_ns}


def _job(origin: CatalogOrigin, fields, config: VitrinaConfig, settings: ReindexConfig, specs: dict[str, str | None],
         shard_size: int) -> dict:
    """What the shards are made from; a resume must match it exactly."""
    enc = config.encoders
    return {
        **_catalog_job(origin),
        "fields": asdict(fields), "text_model": specs["text"], "image_model": specs["image"],
        "encoders": {"backend": enc.backend, "precision": enc.precision, "batch_size": enc.batch_size,
                     "max_text_length": enc.max_text_length},
        "shard_size": shard_size, "engine": settings.engine, "vitrina_version": __version__,
        "images": _image_policy_job(config),  # shards hold the refusals of this policy
    }


def _image_policy_job(config: VitrinaConfig) -> dict:
    """The image policy as job.json records it: a resume under other image flags would reuse other refusals."""
    policy = config.images
    return {"roots": sorted(str(Path(r).resolve()) for r in policy.roots),
            "allow_private_urls": policy.allow_private_urls,
            "allowed_networks": sorted(str(n) for n in policy.allowed_networks), "max_bytes": policy.max_bytes}


def reindex(catalog: CatalogSource, root: str | Path, config: VitrinaConfig | None = None,
            settings: ReindexConfig | None = None, resume: bool = False, on_stage: StageHook | None = None,
            retrain: bool = False) -> ReindexReport:
    """Re-embed and re-index a catalog (a file, or records: dicts, a pyarrow Table or a pandas DataFrame) into a
    new version under `root`, then make it the current one; the live version's behaviour vectors and trained
    heads are carried over (engine.carry_over). Records resume when their content is the same as before."""
    config = config or VitrinaConfig()
    settings = settings or ReindexConfig()
    root = Path(root)
    check_root(root)
    hook = on_stage or (lambda stage, shard: None)
    started = time.perf_counter()
    stream = stream_catalog(catalog, config.catalog)
    if stream.origin.path is None:  # records are in memory already: checked whole before anything is written
        stream.products = iter(list(stream.products))
    with root_lock(root):
        return _reindex(stream, root, config, settings, resume, hook, retrain, started)


def _reindex(stream: CatalogStream, root: Path, config: VitrinaConfig, settings: ReindexConfig, resume: bool,
             hook: StageHook, retrain: bool, started: float) -> ReindexReport:
    seconds: dict[str, float] = {}
    config = replace(config, images=config.images.for_catalog(stream.origin.image_dir))
    total = stream.origin.size()
    specs = {"text": absolute_spec(config.text_model), "image": None}
    image_wanted = config.image_model and config.image_model.lower() != NO_IMAGE_MODEL and stream.fields.image_field
    if image_wanted:
        specs["image"] = absolute_spec(config.image_model)
    store = ShardStore(root / WORK_DIR)
    shard_size = settings.shard_size_for(total)
    done = set(store.start(_job(stream.origin, stream.fields, config, settings, specs, shard_size), resume))
    text_encoder = load_text_encoder(specs["text"], config.encoders.for_catalog())
    image_encoder = load_image_encoder(specs["image"], config.encoders.for_catalog()) if specs["image"] else None
    names = {"text": text_encoder.name, "image": image_encoder.name if image_encoder else ""}
    previous = Previous.of_root(root, names)
    seconds["setup"] = time.perf_counter() - started

    products: list[Product] = []
    shard_count = 0
    show = config.progress
    bars = {
        "read": tqdm(total=total, desc="read", unit="product", disable=not show, position=0),
        "decode": tqdm(total=None, desc="decode", unit="image", disable=not show, position=1),
        "encode": tqdm(total=total, desc="encode", unit="product", disable=not show, position=2),
    }
    encoder = ShardEncoder(text_encoder, image_encoder, config, settings, previous)
    encode_seconds = 0.0
    try:
        for number, chunk in enumerate(_chunks(stream.products, shard_size)):
            shard_count += 1
            products.extend(chunk)
            bars["read"].update(len(chunk))
            hook("read", number)
            if number in done:
                bars["encode"].update(len(chunk))
                continue
            t0 = time.perf_counter()
            shard = _encode_shard(encoder, settings, config, specs, number, chunk, bars)
            encode_seconds += time.perf_counter() - t0
            store.write(shard)
            bars["encode"].update(len(chunk))
            hook("encode", number)
    finally:
        encoder.close()
        for bar in bars.values():
            bar.close()
    if not products:
        raise CatalogError(f"{stream.origin.label}: the catalog has no products")
    seconds["read_and_encode"] = time.perf_counter() - started - seconds["setup"]
    seconds["encode"] = encode_seconds

    t0 = time.perf_counter()
    directory, failures, encoded, reused, tuning = _assemble(store, shard_count, products, stream, config, settings,
                                                             specs, text_encoder, image_encoder)
    seconds["index"] = time.perf_counter() - t0
    hook("index", -1)

    t0 = time.perf_counter()
    from vitrina.engine.build.carry_over import carry_over

    carried = carry_over(root, resolve_index_path(root) if is_versioned_root(root) else None, directory, config, retrain)
    version_dir = save_version(root, directory)
    carried.write(version_dir)
    hook("save", -1)
    removed = publish(root, version_dir, settings.keep)
    hook("publish", -1)
    store.remove()
    seconds["publish"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    return ReindexReport(root, directory.manifest.version, version_dir, len(products), shard_count, len(done),
                         encoded, reused, len(failures), failures, {k: round(v, 3) for k, v in seconds.items()},
                         tuning, sorted(p.name for p in removed), carried.notes)


def _encode_shard(encoder: ShardEncoder, settings: ReindexConfig, config: VitrinaConfig, specs: dict,
                  number: int, chunk: list[Product], bars: dict[str, tqdm]) -> Shard:
    if settings.engine == "ray":
        from vitrina.engine.build.ray_encode import encode_shard_on_ray

        return encode_shard_on_ray(number, chunk, specs, config, settings, encoder.previous, encoder.text.dim, bars)
    return encoder.encode(number, chunk, bars)


def _assemble(store: ShardStore, shard_count: int, products: list[Product], stream, config: VitrinaConfig,
              settings: ReindexConfig, specs: dict, text_encoder: Encoder, image_encoder: Encoder | None):
    """The shards joined into one IndexDirectory (FAISS indexes tuned, BM25, tables, manifest)."""
    ids, text_hashes, image_hashes, text_parts, image_parts, image_rows, failures = [], [], [], [], [], [], []
    encoded = {"text": 0, "image": 0}
    offset = 0
    for number in tqdm(range(shard_count), desc="index: shards", unit="shard", disable=not config.progress, leave=False):
        shard = store.read(number)
        if shard.ids != [p.id for p in products[offset : offset + len(shard)]]:
            raise IndexStoreError(f"{store.path(number)} does not match the catalog; run again without --resume")
        ids += shard.ids
        text_hashes += shard.text_hashes
        image_hashes += shard.image_hashes
        text_parts.append(shard.text)
        image_parts.append(shard.image)
        image_rows.append(shard.image_positions + offset)
        failures += shard.failures
        encoded["text"] += shard.encoded_text
        encoded["image"] += shard.encoded_images
        offset += len(shard)
    if offset != len(products):
        raise IndexStoreError(f"the shards cover {offset} products, the catalog has {len(products)}; run again without --resume")
    infos: dict[str, SpaceInfo] = {}
    spaces: dict[str, VectorSpace] = {}
    tuning: dict[str, dict] = {}
    sources = [("text", text_encoder, specs["text"], np.concatenate(text_parts), np.arange(len(ids), dtype=np.int64))]
    if image_encoder is not None:
        rows = np.concatenate(image_rows)
        if len(rows):
            sources.append(("image", image_encoder, specs["image"], np.concatenate(image_parts), rows))
    for name, enc, spec, vectors, rows in tqdm(sources, desc="index: FAISS", unit="space", disable=not config.progress, leave=False):
        index = ProductIndex.build(vectors, rows, config.index.factory, config.index)
        tuned = tune_search(index, vectors, rows, settings.target_recall) if len(vectors) > 10 else None
        if tuned is not None:
            tuning[name] = tuned.to_json()
        infos[name] = SpaceInfo(encoder=enc.name, model=spec, dim=enc.dim, count=len(rows), factory=index.factory,
                                runtime=describe_runtime(enc), tuning=tuning.get(name))
        spaces[name] = VectorSpace(index, vectors, rows)
    reused = {"text": len(ids) - encoded["text"], "image": (len(spaces["image"].rows) if "image" in spaces else 0) - encoded["image"]}
    texts = [p.text for p in products]
    lexical = LexicalIndex.build(texts, config.index.lexical) if config.index.lexical is not None else None
    manifest = IndexManifest(
        product_count=len(products),
        catalog={"source": stream.origin.manifest_source, "id_field": stream.fields.id_field,
                 "text_fields": list(stream.fields.text_fields or ()), "image_field": stream.fields.image_field,
                 "image_roots": image_roots(config), "image_urls": image_url_rules(config)},
        spaces=infos, images_failed=len(failures), vitrina_version=__version__,
    )
    table = ProductTable.from_records(ids, [p.metadata for p in products])
    content = ProductContent(ids, texts, text_hashes, image_hashes)
    used = {"text": text_encoder, **({"image": image_encoder} if "image" in spaces else {})}
    directory = IndexDirectory(manifest, table, spaces, lexical, exported_dirs(used), content=content)
    return directory, failures, encoded, reused, tuning


def save_version(root: Path, directory: IndexDirectory) -> Path:
    """Write the directory as a complete version under root/versions (named by its manifest version)."""
    staging = staging_dir(root)
    directory.save(staging)
    target = staging.parent / directory.manifest.version
    os.replace(staging, target)
    directory.path = target
    return target

