"""The indexing pipeline: catalog -> encoders -> FAISS indexes -> an index directory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders import Encoder, ImageLoadError, ImageConfig, load_image_encoder, load_text_encoder
from vitrina.encoders.factory import NO_IMAGE_MODEL, is_builtin_name
from vitrina.encoders.image_io import load_images
from vitrina.engine import __version__
from vitrina.engine.data.catalog import Catalog, CatalogSource, Product, read_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.index import IndexDirectory, IndexManifest, LexicalIndex, ProductIndex, ProductTable, SpaceInfo, VectorSpace

TEXT_CHUNK = 1024  # texts per encode call (sorted by length inside it)
PREFETCH_BATCHES = 2  # image batches read and decoded ahead of the encoder


@dataclass
class IndexReport:
    out: Path
    manifest: IndexManifest
    image_failures: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason)
    seconds: dict[str, float] = field(default_factory=dict)


def encode_texts(encoder: Encoder, texts: Sequence[str], progress: bool = True) -> np.ndarray:
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc="text", unit="product", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), TEXT_CHUNK):
            chunk = texts[start : start + TEXT_CHUNK]
            out[start : start + len(chunk)] = encoder.encode(chunk)
            bar.update(len(chunk))
    return out


def encode_product_images(
    encoder: Encoder, products: Sequence[Product], config: VitrinaConfig
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Embed each product's image (read as config.images allows); returns (vectors, product rows, failures).

    Worker threads read, decode and (for ONNX encoders, whose `preprocess` is thread-safe) resize the
    next batches while the encoder runs on this one, so the encoder is not kept waiting on I/O.
    """
    wanted = [(row, p) for row, p in enumerate(products) if p.image]
    enc_cfg = config.encoders
    step = enc_cfg.batch_size
    batches = [wanted[i : i + step] for i in range(0, len(wanted), step)]
    preprocess = getattr(encoder, "preprocess", None)
    vectors, rows, failures = [], [], []

    def load(batch):
        """(row, image or pixels) of the readable images, and (product id, reason) of the others."""
        loaded = load_images([p.image for _, p in batch], enc_cfg.image_timeout_s, enc_cfg.image_max_pixels,
                             policy=config.images, max_aspect=enc_cfg.image_max_aspect)
        good = [(row, img) for (row, _), img in zip(batch, loaded) if not isinstance(img, ImageLoadError)]
        bad = [(p.id, str(img)) for (_, p), img in zip(batch, loaded) if isinstance(img, ImageLoadError)]
        if preprocess is not None and good:
            good = list(zip([row for row, _ in good], preprocess([img for _, img in good])))
        return good, bad

    with ThreadPoolExecutor(max_workers=PREFETCH_BATCHES) as pool, tqdm(
        total=len(wanted), desc="images", unit="product", disable=not config.progress, leave=False
    ) as bar:
        pending = [pool.submit(load, b) for b in batches[:PREFETCH_BATCHES]]
        for i in range(len(batches)):
            good, bad = pending.pop(0).result()
            if i + PREFETCH_BATCHES < len(batches):
                pending.append(pool.submit(load, batches[i + PREFETCH_BATCHES]))
            failures.extend(bad)
            if good:
                items = [item for _, item in good]
                vectors.append(encoder.encode_pixels(np.stack(items)) if preprocess else encoder.encode(items))
                rows.extend(row for row, _ in good)
            bar.update(len(batches[i]))
    dim = encoder.dim
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    return stacked, np.asarray(rows, dtype=np.int64), failures


def describe_runtime(encoder: Encoder) -> str:
    """How an encoder ran, for the manifest: "onnx int8 (CPUExecutionProvider)" or "torch (cpu)"."""
    if hasattr(encoder, "providers"):
        return f"onnx {encoder.precision} ({encoder.providers[0]})"
    return f"torch ({getattr(encoder, 'device', '?')})"


def exported_dirs(encoders: dict[str, Encoder]) -> dict[str, Path]:
    """role -> model directory of the encoders that run exported ONNX graphs (kept in the index)."""
    return {role: enc.model_dir for role, enc in encoders.items() if getattr(enc, "model_dir", None)}


def build_space(encoder: Encoder, spec: str, vectors: np.ndarray, rows: np.ndarray, config: VitrinaConfig):
    """The FAISS index over one modality's vectors, and the manifest record of how it was made."""
    index = ProductIndex.build(vectors, rows, config.index.factory, config.index)
    info = SpaceInfo(encoder=encoder.name, model=spec, dim=encoder.dim, count=len(rows), factory=index.factory,
                     runtime=describe_runtime(encoder))
    return info, VectorSpace(index, vectors, rows)


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


def absolute_spec(spec: str) -> str:
    """Model specs that name local paths are stored absolute, so the index loads from anywhere."""
    prefix = "clip:" if spec.startswith("clip:") else ""
    name, sep, weights = spec[len(prefix) :].partition("=")

    def absolute(part: str) -> str:
        path = Path(part).expanduser()
        return str(path.resolve()) if part and not is_builtin_name(part) and path.exists() else part

    return f"{prefix}{absolute(name)}{sep}{absolute(weights)}"


def build_index(catalog: CatalogSource, out: str | Path, config: VitrinaConfig | None = None) -> IndexReport:
    """Read, embed and index a catalog (a file, or records: dicts, a pyarrow Table or a pandas DataFrame) into
    `out`; an existing index there is replaced only on success."""
    config = config or VitrinaConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    catalog: Catalog = read_catalog(catalog, config.catalog)
    config = replace(config, images=config.images.for_catalog(catalog.origin.image_dir))
    timings["read"] = time.perf_counter() - t0
    products = catalog.products

    t0 = time.perf_counter()
    text_spec = absolute_spec(config.text_model)
    text_encoder = load_text_encoder(text_spec, config.encoders.for_catalog())
    text_vectors = encode_texts(text_encoder, [p.text for p in products], config.progress)
    timings["text"] = time.perf_counter() - t0
    infos, spaces = {}, {}
    infos["text"], spaces["text"] = build_space(
        text_encoder, text_spec, text_vectors, np.arange(len(products), dtype=np.int64), config
    )

    used: dict[str, Encoder] = {"text": text_encoder}
    lexical = None
    if config.index.lexical is not None:
        t0 = time.perf_counter()
        lexical = LexicalIndex.build([p.text for p in products], config.index.lexical)
        timings["lexical"] = time.perf_counter() - t0

    failures: list[tuple[str, str]] = []
    image_spec = config.image_model if config.image_model and config.image_model.lower() != NO_IMAGE_MODEL else None
    if image_spec and catalog.fields.image_field and any(p.image for p in products):
        t0 = time.perf_counter()
        image_spec = absolute_spec(image_spec)
        image_encoder = load_image_encoder(image_spec, config.encoders.for_catalog())
        vectors, rows, failures = encode_product_images(image_encoder, products, config)
        timings["image"] = time.perf_counter() - t0
        if len(rows):
            infos["image"], spaces["image"] = build_space(image_encoder, image_spec, vectors, rows, config)
            used["image"] = image_encoder

    manifest = IndexManifest(
        product_count=len(products),
        catalog={
            "source": catalog.origin.manifest_source,
            "id_field": catalog.fields.id_field,
            "text_fields": list(catalog.fields.text_fields or ()),
            "image_field": catalog.fields.image_field,
            "image_roots": image_roots(config),
            "image_urls": image_url_rules(config),
        },
        spaces=infos,
        images_failed=len(failures),
        vitrina_version=__version__,
    )
    table = ProductTable.from_records([p.id for p in products], [p.metadata for p in products])
    IndexDirectory(manifest, table, spaces, lexical, exported_dirs(used)).save(Path(out))
    return IndexReport(Path(out), manifest, failures, timings)
