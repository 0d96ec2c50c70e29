"""The encode stage of every build: a shard of products -> its text and image vectors (a Shard).

Which models a build runs is decided in one place (`model_specs`: `--image-model none`, a catalog without
images). Products whose text or image bytes hash the same as in the live version keep its vectors
(`Previous`). The stage has swappable executors with one interface, `encode(number, products, bars) -> Shard`:
`LocalExecutor` runs the encoders in this process with images read, hashed and decoded ahead on threads
(and, where the image encoder can `submit`, batches embedded while the next ones decode);
`engine.build.ray_encode.RayExecutor` runs them on Ray actors. Both make the same Shard.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders import Encoder, ImageLoadError, load_image_encoder, load_text_encoder
from vitrina.encoders.colour import COLOUR_SPACE, ColourConfig, colour_descriptor
from vitrina.encoders.factory import NO_IMAGE_MODEL, is_builtin_name
from vitrina.encoders.image_io import decode_image, read_image_bytes
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig, Product
from vitrina.engine.build.shards import Shard
from vitrina.index import IndexDirectory, IndexManifest
from vitrina.index.content import CONTENT_FILE, ProductContent, content_hash, join_image_hashes, split_image_hashes
from vitrina.index.store import read_ordinals, read_vectors
from vitrina.index.versions import is_versioned_root, resolve_index_path

TEXT_CHUNK = 8192  # texts per encode call (sorted by length inside it; 1024 cost 5-8% more CPU: RESULTS, issue 19)
Bars = dict[str, tqdm]  # progress bars the stage updates where present: "text" (products), "decode" (images)
ImageSlot = tuple[int, int, str]  # (position of the product in its shard, image ordinal, image source)


def image_slots(products: Sequence[Product]) -> list[ImageSlot]:
    """Every image of the products, in catalog order: each is read, hashed and embedded on its own."""
    return [(i, ordinal, source) for i, p in enumerate(products) for ordinal, source in enumerate(p.image_sources)]


def refused_images(products: Sequence[Product], cap: int) -> list[tuple[str, str]]:
    """(product id, reason) of the products that named more images than the cap allows."""
    return [(p.id, f"{p.images_refused} more image(s) left out: at most {cap} per product (max_images)")
            for p in products if p.images_refused]


def absolute_spec(spec: str) -> str:
    """Model specs that name local paths are stored absolute, so the index loads from anywhere."""
    prefix = "clip:" if spec.startswith("clip:") else ""
    name, sep, weights = spec[len(prefix) :].partition("=")

    def absolute(part: str) -> str:
        path = Path(part).expanduser()
        return str(path.resolve()) if part and not is_builtin_name(part) and path.exists() else part

    return f"{prefix}{absolute(name)}{sep}{absolute(weights)}"


@dataclass(frozen=True)
class ModelSpecs:
    """The models a build runs, as the manifest records them; image None: the build makes no image space."""

    text: str
    image: str | None


def model_specs(config: VitrinaConfig, fields: CatalogConfig, products: Sequence[Product] | None = None) -> ModelSpecs:
    """The one place that decides whether a build embeds images: not with `--image-model none`, not for a catalog
    without an image field, and not when none of the products (where all are known up front) names an image."""
    wanted = config.image_model and config.image_model.lower() != NO_IMAGE_MODEL and fields.image_field
    if wanted and products is not None and not any(p.image for p in products):
        wanted = False
    return ModelSpecs(absolute_spec(config.text_model), absolute_spec(config.image_model) if wanted else None)


@dataclass
class Encoders:
    """The loaded encoders of a build (image None: no image space)."""

    specs: ModelSpecs
    text: Encoder
    image: Encoder | None
    load_seconds: dict[str, float] = field(default_factory=lambda: {"text": 0.0, "image": 0.0})
    colour: ColourConfig | None = None  # the colour descriptor stored beside each image vector (None: none)

    @classmethod
    def load(cls, specs: ModelSpecs, config: VitrinaConfig) -> "Encoders":
        catalog = config.encoders.for_catalog()
        started = time.perf_counter()
        text = load_text_encoder(specs.text, catalog)
        middle = time.perf_counter()
        image = load_image_encoder(specs.image, catalog) if specs.image else None
        return cls(specs, text, image, {"text": middle - started, "image": time.perf_counter() - middle},
                   config.encoders.colour if image is not None else None)

    @property
    def names(self) -> dict[str, str]:
        return {"text": self.text.name, "image": self.image.name if self.image is not None else "",
                COLOUR_SPACE: self.colour.name if self.colour is not None else ""}


def encode_texts(encoder: Encoder, texts: Sequence[str], progress: bool = True, bar: tqdm | None = None) -> np.ndarray:
    """The texts' vectors, TEXT_CHUNK at a time; progress on `bar` when given, else on a bar of its own."""
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc="text", unit="product", disable=not progress or bar is not None, leave=False) as own:
        for start in range(0, len(texts), TEXT_CHUNK):
            chunk = texts[start : start + TEXT_CHUNK]
            out[start : start + len(chunk)] = encoder.encode(chunk)
            (bar or own).update(len(chunk))
    return out


class Previous:
    """The live version's vectors by product id and content hash, for reusing unchanged products."""

    def __init__(self, manifest: IndexManifest | None, content: ProductContent | None,
                 stored: dict[str, tuple[np.ndarray, np.ndarray]], encoder_names: dict[str, str],
                 ordinals: dict[str, np.ndarray | None] | None = None) -> None:
        """stored: space -> (vectors, product rows) of the live version; ordinals: space -> image ordinal of
        each vector, where products hold several images."""
        self.lookup: dict[str, dict[str, tuple[str, np.ndarray, int]]] = {"text": {}}  # id -> (hash, vectors, position)
        # per-photo spaces ("image" and its "colour" descriptors): id -> image digest -> (vectors, position)
        self.photos: dict[str, dict[str, dict[str, tuple[np.ndarray, int]]]] = {"image": {}, COLOUR_SPACE: {}}
        if manifest is None or content is None:
            return
        for space, hashes in (("text", content.text_hashes), ("image", content.image_hashes),
                              (COLOUR_SPACE, content.image_hashes)):  # a photo's colour descriptor: by its image hash
            info = manifest.spaces.get(space)
            if space not in stored or info is None or info.encoder != encoder_names.get(space):
                continue  # another model made these vectors: nothing to reuse
            vectors, rows = stored[space]
            numbers = (ordinals or {}).get(space)
            for position, row in enumerate(np.asarray(rows).tolist()):
                if not hashes[row]:
                    continue
                if space == "text":
                    self.lookup[space][content.ids[row]] = (hashes[row], vectors, position)
                    continue
                digests = split_image_hashes(hashes[row])
                ordinal = 0 if numbers is None else int(numbers[position])
                if ordinal < len(digests) and digests[ordinal]:
                    self.photos[space].setdefault(content.ids[row], {})[digests[ordinal]] = (vectors, position)

    @classmethod
    def nothing(cls) -> "Previous":
        """No live version: every product is encoded."""
        return cls(None, None, {}, {})

    @classmethod
    def of_directory(cls, directory: IndexDirectory, encoder_names: dict[str, str]) -> "Previous":
        stored = {name: (space.vectors, space.rows) for name, space in directory.spaces.items()}
        ordinals = {name: space.ordinals for name, space in directory.spaces.items()}
        return cls(directory.manifest, directory.content, stored, encoder_names, ordinals)

    @classmethod
    def of_root(cls, root: Path, encoder_names: dict[str, str]) -> "Previous":
        """The current version of a versioned root (nothing when it has none), read without loading its
        FAISS and BM25 indexes: only the manifest, the content hashes and the memory-mapped vectors."""
        if not is_versioned_root(root):
            return cls.nothing()
        path = resolve_index_path(root)
        manifest = IndexManifest.load(path)
        stored = {name: read_vectors(path, name) for name in ("text", "image", COLOUR_SPACE) if name in manifest.spaces}
        ordinals = {name: read_ordinals(path, name, len(rows)) for name, (_, rows) in stored.items()}
        return cls(manifest, ProductContent.load(path / CONTENT_FILE), stored, encoder_names, ordinals)

    def image_digests(self, product_id: str, space: str = "image") -> set[str]:
        """The digests of the product's images that have a live vector in `space` (any ordinal: a moved image
        is reused)."""
        return set(self.photos[space].get(product_id, ()))

    def vector(self, space: str, product_id: str, digest: str) -> np.ndarray | None:
        """The live vector of the product (an image: any of its images) whose content hashes to `digest`, else None."""
        if space in self.photos:
            found_image = self.photos[space].get(product_id, {}).get(digest)
            return None if found_image is None else np.asarray(found_image[0][found_image[1]], dtype=np.float32)
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


class Executor(Protocol):
    """Runs the encode stage on shards of products."""

    seconds: dict[str, float]  # "text" and "image": time spent embedding each, over all shards

    def encode(self, number: int, products: Sequence[Product], bars: Bars) -> Shard: ...

    def close(self) -> None: ...


class LocalExecutor:
    """The encoders in this process: texts, then images read, hashed and decoded ahead on threads."""

    def __init__(self, encoders: Encoders, config: VitrinaConfig, previous: Previous, decode_threads: int) -> None:
        self.text, self.image, self.config, self.previous = encoders.text, encoders.image, config, previous
        self.pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="vitrina-decode")
        self.preprocess = getattr(self.image, "preprocess", None)
        self.colour = encoders.colour
        self.images_failed = 0
        self.seconds = {"text": 0.0, "image": 0.0}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, product: Product, source: str, bars: Bars) -> tuple[str, object, np.ndarray | None]:
        """(image hash, pixels / image / None when unchanged, or the ImageLoadError; the photo's colour
        descriptor, None when unchanged too or none is stored) of one of its images. An unchanged photo is
        decoded only when the live version has no descriptor of it (an index built before them)."""
        enc = self.config.encoders
        try:
            data = read_image_bytes(source, enc.image_timeout_s, self.config.images)
            digest = content_hash(data)
            unchanged = digest in self.previous.image_digests(product.id)
            colour_kept = self.colour is None or digest in self.previous.image_digests(product.id, COLOUR_SPACE)
            if unchanged and colour_kept:
                return digest, None, None
            image = decode_image(data, source, enc.image_max_pixels, enc.image_max_aspect)
            colour = None if colour_kept else colour_descriptor(image, self.colour)
            if unchanged:
                return digest, None, colour
            item = self.preprocess([image])[0] if self.preprocess is not None else image
            return digest, item, colour
        except ImageLoadError as exc:
            return "", exc, None
        finally:
            if "decode" in bars:
                bars["decode"].update(1)

    def encode(self, number: int, products: Sequence[Product], bars: Bars) -> Shard:
        wanted = image_slots(products) if self.image is not None else []
        window = max(4, 4 * self.config.encoders.batch_size)  # images decoded ahead of the encoder, at most
        pending: deque[tuple[ImageSlot, Future]] = deque()
        queue = iter(wanted)

        def top_up() -> None:
            for slot in islice(queue, window - len(pending)):
                pending.append((slot, self.pool.submit(self._load, products[slot[0]], slot[2], bars)))

        top_up()  # images start decoding while the texts encode
        started = time.perf_counter()
        text_hashes, text, todo = self.previous.reuse_texts(products, self.text.dim)
        if todo:
            text[todo] = encode_texts(self.text, [products[i].text for i in todo], progress=False, bar=bars.get("text"))
        middle = time.perf_counter()
        self.seconds["text"] += middle - started
        digests: list[list[str]] = [[""] * len(p.image_sources) for p in products]
        failures = refused_images(products, self.config.catalog.max_images) if self.image is not None else []
        positions: list[int] = []
        ordinals: list[int] = []
        image_vectors: list[np.ndarray] = []
        colours: dict[tuple[int, int], np.ndarray] = {}  # (position, ordinal) -> colour descriptor
        batch: list[tuple[ImageSlot, object]] = []
        submitted: list[tuple[list[ImageSlot], Future]] = []  # batches in flight while the next ones decode
        submit = getattr(self.image, "submit", None) if self.preprocess is not None else None
        encoded_images = 0

        def keep(slots: Sequence[ImageSlot], vectors: np.ndarray) -> None:
            for (i, ordinal, _), vector in zip(slots, vectors):
                positions.append(i)
                ordinals.append(ordinal)
                image_vectors.append(vector)

        def flush() -> None:
            nonlocal encoded_images
            if not batch:
                return
            items = [item for _, item in batch]
            if submit is not None:
                submitted.append(([slot for slot, _ in batch], submit(np.stack(items))))
            else:
                vectors = self.image.encode_pixels(np.stack(items)) if self.preprocess is not None else self.image.encode(items)
                keep([slot for slot, _ in batch], vectors)
            encoded_images += len(batch)
            batch.clear()

        while pending:
            slot, future = pending.popleft()
            i, ordinal, _ = slot
            digest, item, colour = future.result()
            top_up()
            if isinstance(item, ImageLoadError):  # this image only: the product keeps its others
                failures.append((products[i].id, str(item)))
                self.images_failed += 1
                if "decode" in bars:
                    bars["decode"].set_postfix(images_failed=self.images_failed, refresh=False)
                continue
            digests[i][ordinal] = digest
            if self.colour is not None:
                colours[i, ordinal] = colour if colour is not None else self.previous.vector(COLOUR_SPACE, products[i].id, digest)
            if item is None:  # unchanged since the live version (as any of the product's images)
                positions.append(i)
                ordinals.append(ordinal)
                image_vectors.append(self.previous.vector("image", products[i].id, digest))
                continue
            batch.append((slot, item))
            if len(batch) >= self.config.encoders.batch_size:
                flush()
        flush()
        if submitted:
            self.image.wait()  # raises when a batch failed
            for slots, future in submitted:
                keep(slots, future.result())
        self.seconds["image"] += time.perf_counter() - middle
        order = np.lexsort((ordinals, positions))  # catalog and image order, however the batches fell
        image_dim = self.image.dim if self.image is not None else 0
        stacked = np.stack(image_vectors)[order] if image_vectors else np.zeros((0, image_dim), dtype=np.float32)
        kept_positions, kept_ordinals = np.asarray(positions, dtype=np.int64)[order], np.asarray(ordinals, dtype=np.int64)[order]
        return Shard(number, [p.id for p in products], text_hashes, [join_image_hashes(d) for d in digests], text,
                     stacked, kept_positions, failures, len(todo), encoded_images, kept_ordinals,
                     colour_rows(self.colour, colours, kept_positions, kept_ordinals))


def colour_rows(config: ColourConfig | None, colours: dict[tuple[int, int], np.ndarray], positions: np.ndarray,
                ordinals: np.ndarray) -> np.ndarray:
    """The colour descriptors of the photos at (`positions`, `ordinals`) (rows of a Shard's image vectors);
    (0, 0) when none are stored."""
    if config is None:
        return np.zeros((0, 0), dtype=np.float32)
    if not len(positions):
        return np.zeros((0, config.dim), np.float32)
    return np.stack([colours[int(i), int(o)] for i, o in zip(positions, ordinals)])


def executor_for(engine: str, encoders: Encoders, config: VitrinaConfig, previous: Previous, decode_threads: int,
                 ray_actors: int | None = None) -> Executor:
    """The encode stage on `engine`: "local" (threads in this process) or "ray" (actors on a Ray cluster)."""
    if engine == "ray":
        from vitrina.engine.build.ray_encode import RayExecutor

        return RayExecutor(encoders, config, previous, ray_actors)
    return LocalExecutor(encoders, config, previous, decode_threads)
