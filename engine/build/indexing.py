"""`vitrina index`: the build pipeline (engine.build.pipeline) over a whole catalog as one shard, into a plain
index directory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from vitrina.engine.build.calibrate import calibrate_index
from vitrina.engine.build.pipeline import MemoryShards, Plan, ReindexConfig, build
from vitrina.engine.build.settings import build_settings
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogSource, read_catalog
from vitrina.index import IndexManifest

__all__ = ["IndexReport", "build_index"]


@dataclass
class IndexReport:
    out: Path
    manifest: IndexManifest
    image_failures: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason)
    seconds: dict[str, float] = field(default_factory=dict)


def build_index(catalog: CatalogSource, out: str | Path, config: VitrinaConfig | None = None,
                settings_files: Mapping[str, bytes] | None = None) -> IndexReport:
    """Read, embed and index a catalog (a file, or records: dicts, a pyarrow Table or a pandas DataFrame) into
    `out`; an existing index there is replaced only on success. `settings_files`: index settings files
    (engine.build.settings) stored with it."""
    config = config or VitrinaConfig()
    files = build_settings(settings_files)
    started = time.perf_counter()
    whole = read_catalog(catalog, config.catalog)  # every row checked before a model loads
    read_seconds = time.perf_counter() - started
    plan = Plan.whole(whole, config)
    show = config.progress
    bars = {"text": tqdm(total=len(whole), desc="text", unit="product", disable=not show, leave=False)}
    if plan.specs.image:
        bars["decode"] = tqdm(total=sum(len(p.image_sources) for p in whole.products), desc="images", unit="image",
                              disable=not show, leave=False)
    built = build(plan, ReindexConfig(), MemoryShards(), bars=bars, versioned=False)
    directory = built.assembled.directory
    directory.settings = files
    directory.save(Path(out))
    calibrate_index(directory, config)  # the relevance floor and score scale, stored beside (engine.build.calibrate)
    seconds = {"read": read_seconds, "text": built.seconds["text"]}
    if directory.lexical is not None:
        seconds["lexical"] = built.seconds["lexical"]
    if plan.specs.image:
        seconds["image"] = built.seconds["image"]
    return IndexReport(Path(out), directory.manifest, built.assembled.failures, seconds)
