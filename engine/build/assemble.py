"""The assemble stage of every build: encoded shards -> vector spaces, BM25 and the manifest, as one
IndexDirectory; and the manifest's record of the catalog (where images may be served from, under which URL rules)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders import Encoder, ImageConfig
from vitrina.encoders.colour import COLOUR_SPACE, ColourConfig
from vitrina.engine import __version__
from vitrina.engine.build.encode import Encoders
from vitrina.engine.build.groups import attach_groups, grouping_of
from vitrina.engine.build.shards import Shard
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig, CatalogOrigin, Product
from vitrina.index import IndexDirectory, IndexManifest, LexicalIndex, ProductIndex, ProductTable, SpaceInfo, VectorSpace
from vitrina.index.content import ProductContent
from vitrina.index.tuning import tune_search

TUNE_MIN_VECTORS = 10  # smaller spaces are searched exactly, nothing to tune


def describe_runtime(encoder: Encoder) -> str:
    """How an encoder ran, for the manifest: "onnx int8 (CPUExecutionProvider)" or "torch (cpu)"."""
    if hasattr(encoder, "providers"):
        return f"onnx {encoder.precision} ({encoder.providers[0]})"
    return f"torch ({getattr(encoder, 'device', '?')})"


def exported_dirs(encoders: dict[str, Encoder]) -> dict[str, Path]:
    """role -> model directory of the encoders that run exported ONNX graphs (kept in the index)."""
    return {role: enc.model_dir for role, enc in encoders.items() if getattr(enc, "model_dir", None)}


def build_space(encoder: Encoder, spec: str, vectors: np.ndarray, rows: np.ndarray, config: VitrinaConfig,
                target_recall: float | None = None, ordinals: np.ndarray | None = None) -> tuple[SpaceInfo, VectorSpace]:
    """The FAISS index over one modality's vectors, and the manifest record of how it was made; with
    `target_recall`, nprobe/efSearch of an approximate index tuned to reach it (recorded as `info.tuning`).
    ordinals: the image ordinal of each vector where products hold several (kept only when some is not 0)."""
    index = ProductIndex.build(vectors, rows, config.index.factory, config.index)
    tuned = None
    if target_recall is not None and len(vectors) > TUNE_MIN_VECTORS:
        tuned = tune_search(index, vectors, rows, target_recall)
    info = SpaceInfo(encoder=encoder.name, model=spec, dim=encoder.dim, count=len(rows), factory=index.factory,
                     runtime=describe_runtime(encoder), tuning=tuned.to_json() if tuned is not None else None)
    return info, VectorSpace(index, vectors, rows, stored_ordinals(ordinals), config.index.stored_dtype)


def stored_ordinals(ordinals: np.ndarray | None) -> np.ndarray | None:
    """Image ordinals as a space keeps them: None when every vector is its product's first image."""
    if ordinals is None or not np.asarray(ordinals).any():
        return None
    return np.asarray(ordinals, dtype=np.int64)


def colour_space(colour: ColourConfig, vectors: np.ndarray, rows: np.ndarray, config: VitrinaConfig,
                 ordinals: np.ndarray | None = None) -> tuple[SpaceInfo, VectorSpace]:
    """The "colour" space: one descriptor per photo (same rows as "image"), exact (Flat) search, its settings
    recorded as the encoder name so descriptors made another way are recomputed, never mixed."""
    index = ProductIndex.build(vectors, rows, "Flat", config.index)
    info = SpaceInfo(encoder=colour.name, model="", dim=colour.dim, count=len(rows), factory=index.factory,
                     runtime="colour descriptor (numpy)")
    return info, VectorSpace(index, vectors, rows, ordinals, config.index.stored_dtype)


# --- the manifest's record of the catalog ----------------------------------------------------------------------

def recorded_image_roots(catalog: dict) -> list[str]:
    """The image folders a manifest's catalog record names; before they were recorded, the catalog's folder."""
    if "image_roots" in catalog:
        return [str(root) for root in catalog["image_roots"]]
    return [str(Path(catalog["source"]).parent)] if catalog.get("source") else []


def image_roots(config: VitrinaConfig, recorded: Sequence[str] = ()) -> list[str]:
    """The folders local images may be served from, for the manifest: those recorded before, then the policy's."""
    return list(dict.fromkeys([*recorded, *(str(root) for root in config.images.roots)]))


def image_url_rules(config: VitrinaConfig, recorded: dict | None = None) -> dict:
    """The URL rules images were fetched under, for the manifest (the server redirects to image URLs
    only under the same rules); an upsert keeps what was allowed before."""
    recorded = recorded or {}
    networks = [*recorded.get("allowed_networks", ()), *(str(n) for n in config.images.allowed_networks)]
    return {"allow_private_urls": bool(recorded.get("allow_private_urls")) or config.images.allow_private_urls,
            "allowed_networks": list(dict.fromkeys(networks))}


def recorded_url_policy(catalog: dict) -> ImageConfig:
    """The URL rules a manifest's catalog record names (before they were recorded: public addresses only)."""
    rules = catalog.get("image_urls") or {}
    return ImageConfig.from_flags(networks=rules.get("allowed_networks", ()),
                                  allow_private_urls=bool(rules.get("allow_private_urls")))


def catalog_record(origin: CatalogOrigin, fields: CatalogConfig, config: VitrinaConfig) -> dict:
    """The manifest's record of the catalog an index was built from (config.images: the policy it was read under)."""
    return {"source": origin.manifest_source, "id_field": fields.id_field, "text_fields": list(fields.text_fields or ()),
            "image_field": fields.image_field, "image_roots": image_roots(config), "image_urls": image_url_rules(config),
            **({"max_images": fields.max_images} if fields.max_images != CatalogConfig.max_images else {})}


# --- shards -> IndexDirectory ----------------------------------------------------------------------------------

@dataclass
class Assembled:
    directory: IndexDirectory
    failures: list[tuple[str, str]]  # (product id, reason) of the images that could not be read
    encoded: dict[str, int]  # space -> products encoded by this build (the rest reused)
    reused: dict[str, int]  # space -> vectors kept from the live version
    tuning: dict[str, dict]  # space -> index.tuning.Tuning of the tuned spaces
    lexical_seconds: float = 0.0


def assemble(shards: Iterable[Shard], products: Sequence[Product], origin: CatalogOrigin, fields: CatalogConfig,
             config: VitrinaConfig, encoders: Encoders, target_recall: float | None, versioned: bool) -> Assembled:
    """The shards (in catalog order) joined into one IndexDirectory: FAISS indexes (tuned to `target_recall`
    unless None), BM25, the product table and the manifest. `versioned`: the directory is a version of a
    root, which keeps the products' content (texts and hashes) for the next build to reuse, and shows
    progress over the shards and spaces."""
    show = config.progress and versioned
    ids, text_hashes, image_hashes, text_parts, image_parts, image_rows, failures = [], [], [], [], [], [], []
    image_ordinals = []
    colour_parts = []
    encoded = {"text": 0, "image": 0}
    for shard in tqdm(shards, desc="index: shards", unit="shard", disable=not show, leave=False):
        image_rows.append(shard.image_positions + len(ids))
        image_ordinals.append(shard.ordinals())
        ids += shard.ids
        text_hashes += shard.text_hashes
        image_hashes += shard.image_hashes
        text_parts.append(shard.text)
        image_parts.append(shard.image)
        colour_parts.append(shard.colour)
        failures += shard.failures
        encoded["text"] += shard.encoded_text
        encoded["image"] += shard.encoded_images
    sources = [("text", encoders.text, encoders.specs.text, np.concatenate(text_parts), np.arange(len(ids), dtype=np.int64),
                None)]
    if encoders.image is not None:
        rows = np.concatenate(image_rows)
        if len(rows):  # one vector per image: a product with several images repeats its row
            sources.append(("image", encoders.image, encoders.specs.image, np.concatenate(image_parts), rows,
                            np.concatenate(image_ordinals)))
    infos: dict[str, SpaceInfo] = {}
    spaces: dict[str, VectorSpace] = {}
    for name, encoder, spec, vectors, rows, ordinals in tqdm(sources, desc="index: FAISS", unit="space", disable=not show,
                                                             leave=False):
        infos[name], spaces[name] = build_space(encoder, spec, vectors, rows, config, target_recall, ordinals)
    if "image" in spaces and encoders.colour is not None and all(len(c) == len(i) for c, i in zip(colour_parts, image_parts)):
        infos[COLOUR_SPACE], spaces[COLOUR_SPACE] = colour_space(encoders.colour, np.concatenate(colour_parts),
                                                                 spaces["image"].rows, config, spaces["image"].ordinals)
    tuning = {name: info.tuning for name, info in infos.items() if info.tuning is not None}
    reused = {"text": len(ids) - encoded["text"], "image": (len(spaces["image"].rows) if "image" in spaces else 0) - encoded["image"]}
    texts = [p.text for p in products]
    started = time.perf_counter()
    lexical = LexicalIndex.build(texts, config.index.lexical) if config.index.lexical is not None else None
    lexical_seconds = time.perf_counter() - started
    manifest = IndexManifest(product_count=len(products), catalog=catalog_record(origin, fields, config), spaces=infos,
                             images_failed=len(failures), vitrina_version=__version__)
    table = ProductTable.from_records(ids, [p.metadata for p in products])
    content = ProductContent(ids, texts, text_hashes, image_hashes) if versioned else None
    used = {"text": encoders.text, **({"image": encoders.image} if "image" in spaces else {})}
    directory = IndexDirectory(manifest, table, spaces, lexical, exported_dirs(used), content=content)
    attach_groups(directory, grouping_of(fields))
    return Assembled(directory, failures, encoded, reused, tuning, lexical_seconds)
