"""The one build job, from a catalog to an index directory:

    catalog --read--> shards of products --encode (engine.build.encode: local threads or Ray)--> Shards in a
    checkpoint --assemble (engine.build.assemble)--> one IndexDirectory --write--> a plain directory, or a new
    version of a versioned root switched to atomically (`publish_version`).

`vitrina index` runs it over the whole catalog as one shard kept in memory, with nothing to reuse, into a plain
directory (engine.build.indexing); `vitrina reindex` streams the catalog in shards written as checkpoint files
that a killed job resumes from, reuses the vectors of unchanged products and publishes a version
(engine.build.reindex); `vitrina upsert` runs the encode stage on the products given (engine.build.updates).
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

from vitrina.engine.build.assemble import Assembled, assemble
from vitrina.engine.build.encode import Bars, Encoders, ModelSpecs, Previous, executor_for, model_specs
from vitrina.engine.build.shards import Shard, ShardStore
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import Catalog, CatalogConfig, CatalogOrigin, CatalogStream, Product
from vitrina.engine.errors import CatalogError
from vitrina.index import IndexDirectory
from vitrina.index.errors import IndexStoreError
from vitrina.index.versions import clean_builds, publish, staging_dir
from vitrina.errors import Param

LOCK_FILE = ".lock"
ENGINES = ("local", "ray")
StageHook = Callable[[str, int], None]  # (stage, shard number or -1): called after each step, for tests and callers
AUTO_SHARDS = 20  # automatic shard size: a twentieth of the catalog, so a resume redoes at most ~5% of the work
AUTO_SHARD_MIN = 200  # products; smaller catalogs take seconds, where shards would only add overhead
AUTO_SHARD_MAX = 5_000  # products; about a minute of text and image encoding on a CPU


@dataclass(frozen=True)
class ReindexConfig:
    """How a build runs. keep: versions kept (the current one always stays)."""

    shard_size: int | None = None  # products per checkpointed shard; None: automatic (`shard_size_for`)
    keep: int = 3
    engine: str = "local"  # "local" or "ray" (the encode stage on a Ray cluster)
    target_recall: float = 0.95  # recall@10 that nprobe/efSearch are tuned to on approximate indexes
    decode_threads: int = max(2, min(8, os.cpu_count() or 2))
    ray_actors: int | None = None  # encoder actors on Ray (None: one per GPU, else 2)

    def __post_init__(self) -> None:
        if self.shard_size is not None and self.shard_size < 1:
            raise CatalogError("{shard_size} must be at least 1, got {value}", shard_size=Param("shard_size"),
                               value=self.shard_size)
        if self.keep < 1:
            raise CatalogError("{keep} must be at least 1, got {value}", keep=Param("keep"), value=self.keep)
        if self.engine not in ENGINES:
            raise CatalogError("{engine} must be one of {choices}, got {value!r}", engine=Param("engine"),
                               choices=", ".join(ENGINES), value=self.engine)

    def shard_size_for(self, total: int | None) -> int:
        """The shard size given, else 1/AUTO_SHARDS of `total` products within [AUTO_SHARD_MIN, AUTO_SHARD_MAX]."""
        if self.shard_size is not None:
            return self.shard_size
        if total is None:
            return AUTO_SHARD_MAX
        return max(AUTO_SHARD_MIN, min(AUTO_SHARD_MAX, -(-total // AUTO_SHARDS)))


@dataclass
class Plan:
    """What a build makes, decided before any product is encoded."""

    origin: CatalogOrigin
    fields: CatalogConfig  # resolved
    products: Iterator[Product]
    config: VitrinaConfig  # images confined to the catalog's folder and the extra roots
    specs: ModelSpecs
    shard_size: int
    total: int | None  # products, where known up front

    @classmethod
    def streamed(cls, stream: CatalogStream, config: VitrinaConfig, settings: ReindexConfig) -> "Plan":
        """A catalog read as it is encoded, in shards of the size `settings` give for it."""
        config = replace(config, images=config.images.for_catalog(stream.origin.image_dir))
        total = stream.origin.size()
        return cls(stream.origin, stream.fields, stream.products, config, model_specs(config, stream.fields),
                   settings.shard_size_for(total), total)

    @classmethod
    def whole(cls, catalog: Catalog, config: VitrinaConfig) -> "Plan":
        """A catalog read already, as one shard (no image model when no product names an image)."""
        config = replace(config, images=config.images.for_catalog(catalog.origin.image_dir))
        return cls(catalog.origin, catalog.fields, iter(catalog.products), config,
                   model_specs(config, catalog.fields, catalog.products), len(catalog), len(catalog))


class MemoryShards:
    """The checkpoint of a build that does not resume: shards kept in memory."""

    def __init__(self) -> None:
        self.shards: dict[int, Shard] = {}

    def write(self, shard: Shard) -> None:
        self.shards[shard.index] = shard

    def read(self, number: int) -> Shard:
        return self.shards[number]

    def path(self, number: int) -> str:
        return f"shard {number}"


@dataclass
class Built:
    assembled: Assembled
    encoders: Encoders
    products: list[Product]
    shards: int
    resumed_shards: int
    seconds: dict[str, float] = field(default_factory=dict)  # setup, read_and_encode, encode, text, image, index, lexical


def build(plan: Plan, settings: ReindexConfig, store: ShardStore | MemoryShards, *, bars: Bars, versioned: bool,
          done: frozenset[int] | set[int] = frozenset(), previous_of: Callable[[dict[str, str]], Previous] | None = None,
          hook: StageHook | None = None, started: float | None = None) -> Built:
    """Encode the catalog shard by shard (those in `done` are in `store` already) and assemble the index: tuned
    and keeping the products' content when `versioned`. `previous_of(encoder names)`: the vectors to reuse
    (none when not given); `started`: when the job began (its setup is timed from there)."""
    config = plan.config
    hook = hook or (lambda stage, shard: None)
    started = time.perf_counter() if started is None else started
    previous_of = previous_of or (lambda names: Previous.nothing())
    encoders = Encoders.load(plan.specs, config)
    executor = executor_for(settings.engine, encoders, config, previous_of(encoders.names), settings.decode_threads,
                            settings.ray_actors)
    seconds = {"setup": time.perf_counter() - started}
    products: list[Product] = []
    shard_count = 0
    encode_seconds = 0.0
    try:
        for number, chunk in enumerate(_chunks(plan.products, plan.shard_size)):
            shard_count += 1
            products.extend(chunk)
            _update(bars, "read", len(chunk))
            hook("read", number)
            if number in done:
                _update(bars, "encode", len(chunk))
                continue
            t0 = time.perf_counter()
            shard = executor.encode(number, chunk, bars)
            encode_seconds += time.perf_counter() - t0
            store.write(shard)
            _update(bars, "encode", len(chunk))
            hook("encode", number)
    finally:
        executor.close()
        for bar in bars.values():
            bar.close()
    if not products:
        raise CatalogError(f"{plan.origin.label}: the catalog has no products")
    seconds["read_and_encode"] = time.perf_counter() - started - seconds["setup"]
    seconds["encode"] = encode_seconds
    seconds.update({space: encoders.load_seconds[space] + executor.seconds[space] for space in ("text", "image")})

    t0 = time.perf_counter()
    assembled = assemble(_Checkpoint(store, shard_count, products), products, plan.origin, plan.fields,
                         config, encoders, settings.target_recall if versioned else None, versioned)
    seconds["index"] = time.perf_counter() - t0
    seconds["lexical"] = assembled.lexical_seconds
    hook("index", -1)
    return Built(assembled, encoders, products, shard_count, len(done), seconds)


def _update(bars: Bars, name: str, n: int) -> None:
    if name in bars:
        bars[name].update(n)


def _chunks(products: Iterator[Product], size: int) -> Iterator[list[Product]]:
    while chunk := list(islice(products, size)):
        yield chunk


class _Checkpoint:
    """The shards of a build in catalog order, each checked against the catalog read (a resumed job's shards
    must be of the same products)."""

    def __init__(self, store: ShardStore | MemoryShards, count: int, products: list[Product]) -> None:
        self.store, self.count, self.products = store, count, products

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Shard]:
        offset = 0
        for number in range(self.count):
            shard = self.store.read(number)
            if shard.ids != [p.id for p in self.products[offset : offset + len(shard)]]:
                raise IndexStoreError("{shard} does not match the catalog; run again without {resume}",
                                      shard=self.store.path(number), resume=Param("resume"))
            offset += len(shard)
            yield shard
        if offset != len(self.products):
            raise IndexStoreError("the shards cover {offset} products, the catalog has {count}; run again without {resume}",
                                  offset=offset, count=len(self.products), resume=Param("resume"))


# --- writing a version of a versioned root -----------------------------------------------------------------------

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


def save_version(root: Path, directory: IndexDirectory) -> Path:
    """Write the directory as a complete version under root/versions (named by its manifest version)."""
    staging = staging_dir(root)
    directory.save(staging)
    target = staging.parent / directory.manifest.version
    os.replace(staging, target)
    directory.path = target
    return target


@dataclass
class Published:
    path: Path  # the new version directory, now current
    removed: list[Path]  # old versions pruned
    notes: list[str]  # behaviour and trained heads carried over, or why not


def publish_version(root: Path, live_dir: Path | None, directory: IndexDirectory, config: VitrinaConfig, retrain: bool,
                    keep: int, hook: StageHook | None = None) -> Published:
    """Carry the live version's behaviour, trained spaces (engine.build.carry_over) and settings files (those
    `directory` does not set itself, engine.build.settings) over into `directory`, save
    it as a new version of `root` and make it the current one, keeping the last `keep` versions."""
    from vitrina.engine.build.calibrate import calibrate_index
    from vitrina.engine.build.carry_over import carry_over
    from vitrina.engine.build.settings import carried_settings

    hook = hook or (lambda stage, shard: None)
    carried = carry_over(root, live_dir, directory, config, retrain)
    directory.settings = carried_settings(live_dir, directory.settings)
    version_dir = save_version(root, directory)
    carried.write(version_dir)
    calibrate_index(directory, config)  # the relevance floor (engine.build.calibrate), before it goes live
    hook("save", -1)
    removed = publish(root, version_dir, keep)
    hook("publish", -1)
    return Published(version_dir, removed, carried.notes)
