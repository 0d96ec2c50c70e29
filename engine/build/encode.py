"""The encode stage of every build: a shard of products -> its text and image vectors (a Shard).

Which models a build runs is decided in one place (`model_specs`: `--image-model none`, a catalog without
images). Products whose text or image bytes hash the same as in the live version keep its vectors
(`Previous`). The stage has swappable executors with one interface, `encode(number, products, bars) -> Shard`:
`LocalExecutor` runs the encoders in this process with images read, hashed and decoded ahead on threads;
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
from vitrina.index.content import CONTENT_FILE, ProductContent, content_hash
from vitrina.index.store import read_vectors
from vitrina.index.versions import is_versioned_root, resolve_index_path

TEXT_CHUNK = 1024  # texts per encode call (sorted by length inside it)
Bars = dict[str, tqdm]  # progress bars the stage updates where present: "text" (products), "decode" (images)


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
                 stored: dict[str, tuple[np.ndarray, np.ndarray]], encoder_names: dict[str, str]) -> None:
        """stored: space -> (vectors, product rows) of the live version."""
        self.lookup: dict[str, dict[str, tuple[str, np.ndarray, int]]] = {"text": {}, "image": {}, COLOUR_SPACE: {}}  # id -> (hash, vectors, position)
        if manifest is None or content is None:
            return
        for space, hashes in (("text", content.text_hashes), ("image", content.image_hashes),
                              (COLOUR_SPACE, content.image_hashes)):  # a photo's colour descriptor: by its image hash
            info = manifest.spaces.get(space)
            if space not in stored or info is None or info.encoder != encoder_names.get(space):
                continue  # another model made these vectors: nothing to reuse
            vectors, rows = stored[space]
            for position, row in enumerate(np.asarray(rows).tolist()):
                if hashes[row]:
                    self.lookup[space][content.ids[row]] = (hashes[row], vectors, position)

    @classmethod
    def nothing(cls) -> "Previous":
        """No live version: every product is encoded."""
        return cls(None, None, {}, {})

    @classmethod
    def of_directory(cls, directory: IndexDirectory, encoder_names: dict[str, str]) -> "Previous":
        stored = {name: (space.vectors, space.rows) for name, space in directory.spaces.items()}
        return cls(directory.manifest, directory.content, stored, encoder_names)

    @classmethod
    def of_root(cls, root: Path, encoder_names: dict[str, str]) -> "Previous":
        """The current version of a versioned root (nothing when it has none), read without loading its
        FAISS and BM25 indexes: only the manifest, the content hashes and the memory-mapped vectors."""
        if not is_versioned_root(root):
            return cls.nothing()
        path = resolve_index_path(root)
        manifest = IndexManifest.load(path)
        stored = {name: read_vectors(path, name) for name in ("text", "image", COLOUR_SPACE) if name in manifest.spaces}
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

    def _load(self, product: Product, bars: Bars) -> tuple[str, object, np.ndarray | None]:
        """(image hash, pixels / image / None when unchanged, or the ImageLoadError; the photo's colour
        descriptor, None when unchanged too or none is stored). An unchanged photo is decoded only when the
        live version has no descriptor of it (an index built before them)."""
        enc = self.config.encoders
        try:
            data = read_image_bytes(product.image, enc.image_timeout_s, self.config.images)
            digest = content_hash(data)
            unchanged = digest == self.previous.digest("image", product.id)
            colour_kept = self.colour is None or digest == self.previous.digest(COLOUR_SPACE, product.id)
            if unchanged and colour_kept:
                return digest, None, None
            image = decode_image(data, product.image, enc.image_max_pixels, enc.image_max_aspect)
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
        wanted = [i for i, p in enumerate(products) if p.image] if self.image is not None else []
        window = max(4, 4 * self.config.encoders.batch_size)  # images decoded ahead of the encoder, at most
        pending: deque[tuple[int, Future]] = deque()
        queue = iter(wanted)

        def top_up() -> None:
            for i in islice(queue, window - len(pending)):
                pending.append((i, self.pool.submit(self._load, products[i], bars)))

        top_up()  # images start decoding while the texts encode
        started = time.perf_counter()
        text_hashes, text, todo = self.previous.reuse_texts(products, self.text.dim)
        if todo:
            text[todo] = encode_texts(self.text, [products[i].text for i in todo], progress=False, bar=bars.get("text"))
        middle = time.perf_counter()
        self.seconds["text"] += middle - started
        image_hashes = [""] * len(products)
        failures: list[tuple[str, str]] = []
        positions: list[int] = []
        image_vectors: list[np.ndarray] = []
        colours: dict[int, np.ndarray] = {}  # position -> colour descriptor
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
            digest, item, colour = future.result()
            top_up()
            if isinstance(item, ImageLoadError):
                failures.append((products[i].id, str(item)))
                self.images_failed += 1
                if "decode" in bars:
                    bars["decode"].set_postfix(images_failed=self.images_failed, refresh=False)
                continue
            image_hashes[i] = digest
            if self.colour is not None:
                colours[i] = colour if colour is not None else self.previous.vector(COLOUR_SPACE, products[i].id, digest)
            if item is None:  # unchanged since the live version
                positions.append(i)
                image_vectors.append(self.previous.vector("image", products[i].id, digest))
                continue
            batch.append((i, item))
            if len(batch) >= self.config.encoders.batch_size:
                flush()
        flush()
        self.seconds["image"] += time.perf_counter() - middle
        order = np.argsort(positions, kind="stable")  # catalog order, however the batches fell
        image_dim = self.image.dim if self.image is not None else 0
        stacked = np.stack(image_vectors)[order] if image_vectors else np.zeros((0, image_dim), dtype=np.float32)
        kept_positions = np.asarray(positions, dtype=np.int64)[order]
        return Shard(number, [p.id for p in products], text_hashes, image_hashes, text, stacked, kept_positions,
                     failures, len(todo), encoded_images, colour_rows(self.colour, colours, kept_positions))


def colour_rows(config: ColourConfig | None, colours: dict[int, np.ndarray], positions: np.ndarray) -> np.ndarray:
    """The colour descriptors of the photos at `positions` (rows of a Shard's image vectors); (0, 0) when none are stored."""
    if config is None:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([colours[int(i)] for i in positions]) if len(positions) else np.zeros((0, config.dim), np.float32)


def executor_for(engine: str, encoders: Encoders, config: VitrinaConfig, previous: Previous, decode_threads: int,
                 ray_actors: int | None = None) -> Executor:
    """The encode stage on `engine`: "local" (threads in this process) or "ray" (actors on a Ray cluster)."""
    if engine == "ray":
        from vitrina.engine.build.ray_encode import RayExecutor

        return RayExecutor(encoders, config, previous, ray_actors)
    return LocalExecutor(encoders, config, previous, decode_threads)
