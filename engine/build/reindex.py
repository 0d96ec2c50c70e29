"""`vitrina reindex`: the build pipeline (engine.build.pipeline) into a new version of a versioned root,
streamed, sharded, resumable, published atomically.

    catalog --read--> shards of `shard_size` products --decode--> images (a thread pool, ahead of the
    encoder) --encode--> shard files (the checkpoint) --index--> FAISS (+ tuning) and BM25 in a new
    version directory --publish--> the `current` link renamed onto it; the oldest versions pruned.

Products whose text (or image bytes) hash the same as in the live version keep its vectors instead of
being encoded again. A crash anywhere leaves the live version untouched; `resume=True` continues from
the shard files already written, and the result is identical to an uninterrupted run (same shards,
same batches, same deterministic FAISS training).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from vitrina.engine import __version__
from vitrina.engine.build.encode import Previous
from vitrina.engine.build.pipeline import Plan, ReindexConfig, StageHook, build, publish_version, root_lock
from vitrina.engine.build.settings import build_settings
from vitrina.engine.build.shards import ShardStore
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogOrigin, CatalogSource, CatalogStream, stream_catalog
from vitrina.index.store import stored_vector_dtype
from vitrina.index.versions import check_root, is_versioned_root, resolve_index_path

WORK_DIR = ".reindex"
# reindex, and the pipeline's names that callers import from here
__all__ = ["WORK_DIR", "ReindexConfig", "ReindexReport", "StageHook", "reindex"]


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


def _catalog_job(origin: CatalogOrigin) -> dict:
    """The catalog as job.json records it: a file by its path, size and time; records by a digest of their content."""
    if origin.path is None:
        return {"catalog": origin.manifest_source, "catalog_sha256": origin.fingerprint()}
    stat = origin.path.stat()
    return {"catalog": str(origin.path.resolve()), "catalog_size": stat.st_size, "catalog_mtime_ns": stat.st_mtime_ns}


def _job(plan: Plan, settings: ReindexConfig) -> dict:
    """What the shards are made from; a resume must match it exactly."""
    config, enc = plan.config, plan.config.encoders
    return {
        **_catalog_job(plan.origin),
        "fields": asdict(plan.fields), "text_model": plan.specs.text, "image_model": plan.specs.image,
        "encoders": {"backend": enc.backend, "precision": enc.precision, "batch_size": enc.batch_size,
                     "max_text_length": enc.max_text_length},
        "colour": enc.colour.name if enc.colour is not None and plan.specs.image else None,  # shards hold these descriptors
        "shard_size": plan.shard_size, "engine": settings.engine, "vitrina_version": __version__,
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
            retrain: bool = False, settings_files: Mapping[str, bytes] | None = None) -> ReindexReport:
    """Re-embed and re-index a catalog (a file, or records: dicts, a pyarrow Table or a pandas DataFrame) into a
    new version under `root`, then make it the current one; the live version's behaviour vectors and trained
    heads are carried over (engine.carry_over). Records resume when their content is the same as before.
    `settings_files`: index settings files (engine.build.settings) the new version stores; the live version's
    other settings files are carried over."""
    config = config or VitrinaConfig()
    settings = settings or ReindexConfig()
    files = build_settings(settings_files)
    root = Path(root)
    check_root(root)
    config = _keeping_live_dtype(config, root)
    hook = on_stage or (lambda stage, shard: None)
    started = time.perf_counter()
    stream = stream_catalog(catalog, config.catalog)
    if stream.origin.path is None:  # records are in memory already: checked whole before anything is written
        stream.products = iter(list(stream.products))
    with root_lock(root):
        return _reindex(stream, root, config, settings, resume, hook, retrain, started, files)


def _keeping_live_dtype(config: VitrinaConfig, root: Path) -> VitrinaConfig:
    """`config` with the live version's vector storage type when it names none (float16 stays float16)."""
    if config.index.vector_dtype is not None or not is_versioned_root(root):
        return config
    live = stored_vector_dtype(resolve_index_path(root))
    return config if live is None else replace(config, index=replace(config.index, vector_dtype=live))


def _reindex(stream: CatalogStream, root: Path, config: VitrinaConfig, settings: ReindexConfig, resume: bool,
             hook: StageHook, retrain: bool, started: float, files: dict[str, bytes]) -> ReindexReport:
    plan = Plan.streamed(stream, config, settings)
    store = ShardStore(root / WORK_DIR)
    done = set(store.start(_job(plan, settings), resume))
    show = config.progress
    bars = {
        "read": tqdm(total=plan.total, desc="read", unit="product", disable=not show, position=0),
        "decode": tqdm(total=None, desc="decode", unit="image", disable=not show, position=1),
        "encode": tqdm(total=plan.total, desc="encode", unit="product", disable=not show, position=2),
    }
    built = build(plan, settings, store, bars=bars, versioned=True, done=done,
                  previous_of=lambda names: Previous.of_root(root, names), hook=hook, started=started)
    assembled, directory = built.assembled, built.assembled.directory
    directory.settings = files
    t0 = time.perf_counter()
    live_dir = resolve_index_path(root) if is_versioned_root(root) else None
    published = publish_version(root, live_dir, directory, plan.config, retrain, settings.keep, hook)
    store.remove()
    seconds = {key: built.seconds[key] for key in ("setup", "read_and_encode", "encode", "index")}
    seconds["publish"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    return ReindexReport(root, directory.manifest.version, published.path, len(built.products), built.shards,
                         built.resumed_shards, assembled.encoded, assembled.reused, len(assembled.failures),
                         assembled.failures, {k: round(v, 3) for k, v in seconds.items()}, assembled.tuning,
                         sorted(p.name for p in published.removed), published.notes)
