"""SearchSession: load an index directory once, then answer text searches and image lookups."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from vitrina.encoders import Encoder, EncoderError, ImageConfig, load_image_encoder, load_image_space_text_encoder, load_text_encoder
from vitrina.encoders.image_io import decode_image, load_image
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.onnx_runtime import OnnxModelInfo, cache_entry, choose_precision, execution_providers, load_onnx_encoder
from vitrina.engine.data.catalog import image_sources, metadata_key, resolve_image_source, split_image_field
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import ArgumentError, QueryError
from vitrina.engine.learn.attributes import COLOUR_SPACE, SIMILAR_SPACE, photo_features
from vitrina.engine.learn.fusion import FUSED_SPACE, FUSION_DIR, SHARED_IMAGE_SPACE, FusionModel
from vitrina.index import IndexDirectory
from vitrina.index.errors import IndexStoreError
from vitrina.index.dense_batch import batch_search
from vitrina.index.versions import resolve_index_path
from vitrina.engine.query.exact import ExactCodes
from vitrina.engine.query.compose import plan_image_search, plan_text_search, run_image_search, run_text_search
from vitrina.engine.query.filters import PriceRange, product_filter as combined_filter
from vitrina.engine.query.hits import Hits, SearchHit, check_k, clean_query
from vitrina.engine.query.rules.apply import MerchandisingRules
from vitrina.engine.query.variants import ProductGroups, grouped_similar, load_groups
from vitrina.index.filters import FilterColumns, FilterError, ProductFilter
from vitrina.index.hybrid import fuse
from vitrina.errors import Param

SPACES = ("text", "image", "fused")
MODES = ("lexical", "dense", "hybrid")
KEPT_ROLES = {"text": "text", "image": "image", "text->image": "image-text"}  # encoder role -> encoders/<dir>
SPACE_OF_ROLE = {"text": "text", "image": "image", "text->image": "image"}  # the vectors each encoder's output searches
log = logging.getLogger("vitrina")


@dataclass(frozen=True)
class DenseCandidates:
    """The dense leg of text queries already searched (the server does it once for a micro-batch of queries):
    each query's best `depth` (scores, rows) in the target space of `space`, with no filter."""

    space: str
    depth: int
    scores: np.ndarray  # (queries, depth)
    rows: np.ndarray

    def fits(self, space: str, depth: int, allowed: np.ndarray | None) -> bool:
        """Whether these are the candidates a search of `space` at `depth` (and that filter) would find."""
        return allowed is None and space == self.space and depth == self.depth


def unused_graphs(model_dir: Path, config: EncoderConfig) -> set[str]:
    """The graph files of an exported encoder that loading it with `config` does not read (other precisions)."""
    info = OnnxModelInfo.load(model_dir)
    chosen = choose_precision(info, config, on_gpu=len(execution_providers(config)) > 1)
    return {name for precision, name in info.files.items() if name != info.files.get(chosen)}


class SearchSession:
    """Searches one index directory. Encoders load on first use and must match the manifest.

    text_model / image_model override the specs recorded in the manifest (e.g. a moved model
    directory); an encoder whose name differs from the one that built the index is refused.
    """

    def __init__(
        self,
        path: str | Path,
        config: VitrinaConfig | None = None,
        text_model: str | None = None,
        image_model: str | None = None,
    ) -> None:
        self.path = resolve_index_path(path)  # a versioned root (`vitrina reindex`) serves its current version
        self.config = config or VitrinaConfig()
        self._attach(IndexDirectory.load(self.path, self.config.index), text_model, image_model)

    @classmethod
    def over(cls, directory: IndexDirectory, config: VitrinaConfig | None = None) -> "SearchSession":
        """A session over a directory held in memory and saved (its path set): the one a build has just written,
        searched without reading it back (engine.build.calibrate)."""
        if directory.path is None:
            raise ValueError("a session needs a saved index directory (its path is not set)")
        session = cls.__new__(cls)
        session.path = Path(directory.path)
        session.config = config or VitrinaConfig()
        session._attach(directory)
        return session

    def _attach(self, directory: IndexDirectory, text_model: str | None = None, image_model: str | None = None) -> None:
        self.directory = directory
        self.manifest = self.directory.manifest
        self.products = self.directory.products
        self._models = {"text": text_model, "image": image_model}
        self._encoders: dict[str, Encoder] = {}
        self.exact_match = True  # a query that is a product's id or code ranks that product first (engine.query.exact)

    def encoder(self, role: str) -> Encoder:
        """The encoder for 'text' (text space), 'image' (image space) or 'text->image' (CLIP text tower).

        On the ONNX backend, an export kept in the index directory loads without PyTorch; otherwise
        the model is exported once and kept there (best effort: a read-only index still works).
        """
        if role not in self._encoders:
            space = SPACE_OF_ROLE[role]
            info = self.manifest.space(space)
            encoder = self._kept_export(role, info.encoder) or self._load(role, self._models[space] or info.model)
            self.manifest.check_encoder(space, encoder.name, encoder.dim)
            if getattr(encoder, "model_dir", None) and self.directory.encoder_dir(KEPT_ROLES[role]) != encoder.model_dir:
                self._keep_export(role, encoder.model_dir)
            self._encoders[role] = encoder
        return self._encoders[role]

    def _load(self, role: str, spec: str) -> Encoder:
        if role == "text":
            return load_text_encoder(spec, self.config.encoders)
        if role == "image":
            return load_image_encoder(spec, self._image_config())
        return load_image_space_text_encoder(spec, self.config.encoders)

    def _image_config(self) -> EncoderConfig:
        """The encoder settings for photo queries: computed as the catalog's photos were (OpenVINO bf16 where
        the index records it, runtime "auto"), so an uploaded catalog photo finds its own stored vector."""
        from vitrina.encoders.openvino_image import query_config

        return query_config(self.config.encoders, self.manifest.space("image").runtime)

    def _kept_export(self, role: str, encoder_name: str) -> Encoder | None:
        """The ONNX export kept in the index for `role`, when the backend is ONNX and it is that encoder."""
        kept = self.directory.encoder_dir(KEPT_ROLES[role])
        if self.config.encoders.backend != "onnx" or self._models[SPACE_OF_ROLE[role]] or not kept:
            return None
        modality = "image" if role == "image" else "text"
        try:
            if OnnxModelInfo.load(kept).encoder != encoder_name:
                return None
            # refuse (or repair from the ONNX cache) files changed since indexing: IndexStoreError names the file.
            # Only the files loaded here are read: hashing the unused fp32 graph beside the int8 one cost a search
            # 0.1-0.2 s of start-up (issue 19).
            config = self._image_config() if role == "image" else self.config.encoders
            self.directory.check_encoder_files(KEPT_ROLES[role], cache_entry(modality, encoder_name, config),
                                               skip=unused_graphs(kept, config))
            return load_onnx_encoder(kept, config, modality)
        except EncoderError as exc:
            log.warning("ignoring the ONNX model kept in %s: %s", kept, exc)
            return None

    def _keep_export(self, role: str, source: Path) -> None:
        try:
            self.directory.attach_encoder(KEPT_ROLES[role], source)
        except (OSError, IndexStoreError) as exc:
            log.info("could not keep the ONNX export in %s: %s", self.path, exc)

    def hits(self, scores: np.ndarray, rows: np.ndarray, exclude: int | None = None, k: int | None = None) -> list[SearchHit]:
        """Search hits (id, score, metadata) of product rows; rows -1 and `exclude` are skipped."""
        multi = self.multi_image
        hits = [
            SearchHit(self.products.ids[row], float(score), self.products.metadata(row), multi_image=multi)
            for score, row in zip(scores, rows)
            if row >= 0 and row != exclude
        ]
        return hits[:k] if k else hits

    @cached_property
    def multi_image(self) -> bool:
        """Whether some product holds several image vectors (several images per product)."""
        space = self.directory.spaces.get("image")
        return space is not None and space.multi

    def image_names(self, row: int) -> list[str]:
        """A product's image sources by ordinal, as its catalog row writes them (relative paths stay relative)."""
        field = self.manifest.catalog.get("image_field")
        metadata = self.products.metadata(row)
        return image_sources([metadata.get(metadata_key(f)) for f in split_image_field(field)])

    def name_images(self, hits: list[SearchHit], space: str, queries: np.ndarray) -> list[SearchHit]:
        """The hits with `matched_image` set where `space` holds several images per product: the product's image
        that best matches any of the query vectors (the one that scored it)."""
        vectors = self.directory.spaces.get(space)
        if vectors is None or not vectors.multi:
            return hits
        named = []
        for hit in hits:
            row = self.products.row_of(hit.id)
            best = vectors.best_image(queries, row)
            if best is None:
                named.append(hit)
                continue
            names = self.image_names(row)
            name = names[best[1]] if best[1] < len(names) else None
            named.append(dataclasses.replace(hit, matched_image=name, matched_image_index=best[1]))
        return named

    def search_vectors(self, space: str, vectors: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[SearchHit]]:
        self.manifest.space(space)  # a clear error when the index has no such vectors
        scores, rows = self.directory.spaces[space].search(vectors, check_k(k), allowed)
        return [self.name_images(self.hits(s, r), space, v[None, :]) for s, r, v in zip(scores, rows, vectors)]

    @cached_property
    def filters(self) -> FilterColumns:
        """The catalog columns that filters read (category, brand and price, and any column by name)."""
        return FilterColumns(self.products, self.config.filters)

    def allowed_rows(self, product_filter: ProductFilter | None = None, *, where: Mapping[str, Any] | None = None,
                     price: PriceRange | None = None) -> np.ndarray | None:
        """The product rows a filter, `where` conditions and a `price` range all allow (a boolean mask), or
        None for no filter; a QueryError names a column the catalog lacks or a value it cannot compare."""
        query = combined_filter(where, price, product_filter)
        if query is None:
            return None
        try:
            return self.filters.mask(query)
        except FilterError as exc:
            raise QueryError(str(exc)) from None

    @cached_property
    def rules(self) -> MerchandisingRules | None:
        """The merchandising rules stored with this index version (engine.query.rules), or None."""
        from vitrina.engine.query.rules.stored import load_index_rules

        return load_index_rules(self)

    @cached_property
    def groups(self) -> ProductGroups | None:
        """The product groups of an index built with a group field or collapsed duplicates, else None."""
        return load_groups(self.directory)

    @cached_property
    def fusion(self) -> FusionModel | None:
        """The shared-space heads of a trained index (`vitrina train`), else None."""
        if FUSED_SPACE not in self.manifest.spaces:
            return None
        return FusionModel.load(self.path / FUSION_DIR)

    def default_space(self) -> str:
        """fused once the index is trained (`vitrina train`), else text."""
        return "fused" if self.fusion is not None else "text"

    def _check_space(self, space: str) -> str:
        if space not in SPACES:
            raise QueryError(f"unknown space {space!r}; choose one of {', '.join(SPACES)}")
        if space == "fused" and self.fusion is None:
            raise QueryError(f"{self.path} has no fused vectors yet; run `vitrina train {self.path}` first")
        return space

    def _text_target(self, space: str) -> tuple[str, str]:
        """For text queries in `space`: (encoder role, vector space searched).

        `--space image` searches the images in the shared space once trained, else (CLIP) the image
        vectors through the CLIP text tower.
        """
        if space == "fused":
            return "text", FUSED_SPACE
        if space == "image" and self.fusion is not None and SHARED_IMAGE_SPACE in self.manifest.spaces:
            return "text", SHARED_IMAGE_SPACE
        return ("text", "text") if space == "text" else ("text->image", "image")

    def default_mode(self, space: str = "text") -> str:
        """hybrid for text search (text or fused space) when the index has a lexical index, else dense."""
        return "hybrid" if space in ("text", "fused") and self.directory.lexical is not None else "dense"

    @cached_property
    def exact_codes(self) -> ExactCodes | None:
        """Product ids and code-like tokens of the product texts, for exact matches first (engine.query.exact);
        built on first use; None when `exact_match` is off."""
        if not self.exact_match:
            return None
        content = self.directory.content
        if content is None:  # an index built by `vitrina index`: its texts from the stored catalog columns
            from vitrina.engine.build.in_place import derived_content

            content = derived_content(self.directory)
        return ExactCodes.build(self.products.ids, content.texts)

    def corrected_query(self, query: str, mode: str = "hybrid") -> str | None:
        """The query as the lexical leg searches it once typos are corrected (`index.typos`), or None where it
        searches it as typed (no change, dense mode, or an index without a vocabulary)."""
        lexical = self.directory.lexical
        correction = lexical.correct(clean_query(query)) if lexical is not None and mode != "dense" else None
        return None if correction is None else correction.text

    def dense_text(self, query: str, mode: str) -> str:
        """What the dense leg encodes for a query: in hybrid mode the corrected query where the lexical leg
        corrected it (on Home Depot queries with one typo, nDCG@10 0.918x -> 0.946x of clean, clean ones
        unchanged: benchmarks/typos.py), else the query as typed (dense mode searches what was typed); then
        as the index's synonyms rewrite it (`Synonyms.dense_query`, index.synonyms)."""
        cleaned = clean_query(query)
        text = (self.corrected_query(cleaned, mode) or cleaned) if mode == "hybrid" else cleaned
        return text if self.directory.synonyms is None else self.directory.synonyms.dense_query(text)

    def encode_queries(self, queries: Sequence[str], space: str = "text") -> np.ndarray:
        """Query vectors for the dense side of `retrieve` (to encode once and reuse across modes)."""
        return self._encode_clean([clean_query(q) for q in queries], self._check_space(space))

    def _encode_clean(self, cleaned: Sequence[str], space: str) -> np.ndarray:
        role, target = self._text_target(space)
        vectors = self.encoder(role).encode(list(cleaned))
        if target == FUSED_SPACE:
            return self.fusion.fused_query("text", vectors)
        return self.fusion.project("text", vectors) if target == SHARED_IMAGE_SPACE else vectors

    def dense_candidates(self, query_vectors: np.ndarray, space: str, depth: int) -> DenseCandidates:
        """The unfiltered dense search `retrieve` runs for text queries of `space` at `depth`, for many queries in
        one call (the server's micro-batch: FAISS, or one matrix product on an exact index from MATMUL_MIN_BATCH
        queries on, `batch_search`); hand each query's rows back to `retrieve`."""
        target = self._text_target(self._check_space(space))[1]
        self.manifest.space(target)
        scores, rows = batch_search(self.directory.spaces[target], query_vectors, depth)
        return DenseCandidates(space, depth, scores, rows)

    def retrieve(
        self,
        queries: Sequence[str],
        k: int,
        space: str = "text",
        mode: str | None = None,
        query_vectors: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
        dense: DenseCandidates | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, product rows) per query, rows -1 past the end; the engine of `search`.

        query_vectors: the queries already encoded by `encode_queries` (else they are encoded here, as
            `dense_text` gives them: corrected in hybrid mode).
        allowed: a boolean mask of the product rows that may be returned (`allowed_rows`), applied
        inside both the BM25 and the FAISS search. Equal scores rank by row (dense: among the best
        max(k, candidates), so a shorter list is a prefix of a longer one within the candidate depth).
        dense: the dense leg already searched (`dense_candidates`), used where it is the search this call would
        run (same space and depth, no filter); else the vectors are searched here.
        """
        self._check_space(space)
        mode = mode or self.default_mode(space)
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        check_k(k)
        cleaned = [clean_query(q) for q in queries]
        if mode != "dense" and self.directory.lexical is None:
            raise QueryError("{mode} needs a lexical index, and this one has none; re-index the catalog",
                             mode=Param("mode", mode))
        if mode != "dense" and space == "image":
            raise QueryError("{mode} needs words, and {space} searches pictures; use {dense}",
                             mode=Param("mode", mode), space=Param("space", "image"), dense=Param("mode", "dense"))
        hybrid = self.config.hybrid
        depth = max(k, hybrid.candidates) if mode == "hybrid" else k
        if mode != "dense":
            lexical = self.directory.lexical.search(cleaned, depth, allowed)
            if mode == "lexical":
                return lexical
        target = self._text_target(space)[1]
        self.manifest.space(target)  # a clear error when the index has no such vectors
        if query_vectors is None:
            query_vectors = self._encode_clean([self.dense_text(q, mode) for q in cleaned], space)
        vectors = self.directory.spaces[target]
        if mode == "dense":  # at least the candidate depth, so pages agree (a vector index's top-k can change with k)
            depth = max(k, hybrid.candidates)
            found = (dense.scores, dense.rows) if dense is not None and dense.fits(space, depth, allowed) \
                else vectors.search(query_vectors, depth, allowed)
            scores, rows = ties_by_row(*found)
            return scores[:, :k], rows[:, :k]
        dense_hits = (dense.scores, dense.rows) if dense is not None and dense.fits(space, depth, allowed) \
            else vectors.search(query_vectors, depth, allowed)
        return fuse(
            lexical, dense_hits, k, hybrid,
            lexical_rescorer=lambda i, rows: self.directory.lexical.scores_of(cleaned[i], rows),
            dense_rescorer=lambda i, rows: vectors.scores_of(query_vectors[i], rows),
            coverage=lambda i, rows: self.directory.lexical.coverage_of(cleaned[i], rows),
        )

    def matched(
        self,
        queries: Sequence[str],
        space: str = "text",
        mode: str | None = None,
        query_vectors: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
        dense_floor: float | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's matched set, ranked by relevance: (scores, rows), no padding. Facets count it and a
        price sort orders it (engine.query.compose).

        The matched set is every product inside `allowed` that shares a word with the query (all lexical
        matches, lexical and hybrid modes) plus the dense candidates retrieved at the hybrid candidate depth
        (`HybridConfig.candidates`, dense and hybrid modes) whose similarity reaches `dense_floor` (hybrid
        searches pass the catalog's relevance floor, engine.query.calibration; None: every candidate counts).
        In hybrid mode the scores blend both sides over that whole set.
        """
        self._check_space(space)
        mode = mode or self.default_mode(space)
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        cleaned = [clean_query(q) for q in queries]
        lexical_index = self.directory.lexical
        if mode != "dense" and lexical_index is None:
            raise QueryError("{mode} needs a lexical index, and this one has none; re-index the catalog",
                             mode=Param("mode", mode))
        if mode != "dense" and space == "image":
            raise QueryError("{mode} needs words, and {space} searches pictures; use {dense}",
                             mode=Param("mode", mode), space=Param("space", "image"), dense=Param("mode", "dense"))
        if mode != "dense":
            lexical = lexical_index.search(cleaned, max(1, lexical_index.count), allowed)  # every lexical match
            if mode == "lexical":
                return _unpadded(*lexical)
        target = self._text_target(space)[1]
        self.manifest.space(target)
        if query_vectors is None:
            query_vectors = self._encode_clean([self.dense_text(q, mode) for q in cleaned], space)
        vectors = self.directory.spaces[target]
        dense = ties_by_row(*vectors.search(query_vectors, self.config.hybrid.candidates, allowed))
        if dense_floor is not None:  # candidates below the floor are left out (rows -1, as padding)
            dense = (dense[0], np.where(dense[0] >= dense_floor, dense[1], -1))
        if mode == "dense":
            return _unpadded(*dense)
        width = lexical[1].shape[1] + dense[1].shape[1]  # the union is never wider
        return _unpadded(*fuse(
            lexical, dense, width, self.config.hybrid,
            lexical_rescorer=lambda i, rows: lexical_index.scores_of(cleaned[i], rows),
            dense_rescorer=lambda i, rows: vectors.scores_of(query_vectors[i], rows),
            coverage=lambda i, rows: lexical_index.coverage_of(cleaned[i], rows),
        ))

    def search(
        self, queries: str | Sequence[str], k: int = 10, space: str | None = None, mode: str | None = None, *,
        where: Mapping[str, Any] | None = None, price: PriceRange | None = None, user: str | None = None,
        facets: Sequence[str] | None = None, sort: str = "relevance", offset: int = 0,
    ) -> list[Hits]:
        """Text queries by BM25 (lexical), by vectors (dense: the text, fused or image vectors) or both
        fused (hybrid, the default where the index has BM25); one Hits list per query (a text is one query).

        `space` defaults to `default_space()`. where / price: filters applied inside retrieval (see
        engine.query.filters). user: results re-ranked by that shopper's behaviour vector (an unknown
        shopper gets the plain results, `personalised` False; an index without events is an error).
        facets, sort, offset: value counts over the matched set, price sorts and paging (engine.query.compose).
        """
        if user is not None:
            check_k(k)  # before the queries are read, as a shopper's search always checked it
        search = plan_text_search(self, queries, k, space, mode, where=where, price=price, user=user,
                                  facets=facets, sort=sort, offset=offset)
        behaviour = None
        if user is not None:
            from vitrina.engine.query.personalise import load_behaviour

            behaviour = load_behaviour(self)
        target = self._text_target(search.space)[1] if search.mode == "dense" else None
        if target is None or not (target in self.directory.spaces and self.directory.spaces[target].multi):
            return run_text_search(self, search, behaviour=behaviour)
        query_vectors = self.encode_queries(search.dense_queries or search.queries, search.space)  # to name the matched image
        answers = run_text_search(self, search, query_vectors, behaviour=behaviour)
        for answer, vector in zip(answers, query_vectors):
            answer[:] = self.name_images(list(answer), target, vector[None, :])
        return answers

    def default_image_space(self) -> str:
        """Where `similar` looks by default: fused once trained, else the image vectors."""
        return "fused" if self.fusion is not None else "image"

    def similar_space(self, space: str) -> str:
        """The vectors `similar` searches for `space`: for fused, the similar space (fused vectors with the
        attribute terms of `vitrina train --attributes`) where the index has one."""
        return SIMILAR_SPACE if space == "fused" and SIMILAR_SPACE in self.manifest.spaces else space

    def encode_images(self, images: Sequence[Image.Image], space: str = "image") -> np.ndarray:
        """Query vectors of images for `space`: raw image vectors, or projected into the fused space (with the
        photo's attribute descriptors where `similar` searches the similar space)."""
        if self._check_space(space) == "text":
            raise QueryError("an image cannot query the text vectors; use {space} or fused (or {id})",
                             space=Param("space", "image"), id=Param("id"))
        vectors = self.encoder("image").encode(list(images))
        if space != "fused":
            return vectors
        query = self.fusion.fused_query("image", self.fusion.photo_inputs(vectors, list(images)))
        if self.similar_space(space) != SIMILAR_SPACE:
            return query
        heads = self.fusion.attributes
        colour = self.colour_queries(images) if COLOUR_SPACE in heads.inputs else None
        return heads.photo_queries(query, photo_features(heads, vectors, colour))

    def colour_queries(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The colour descriptors of query photos, made as the index's colour space made its own."""
        from vitrina.encoders.colour import ColourConfig, colour_descriptors

        try:
            config = ColourConfig.from_name(self.manifest.space(COLOUR_SPACE).encoder)
        except ValueError:
            raise QueryError("this index's colour descriptors were made by a version of Vitrina that this one cannot "
                             "reproduce for a photo; use {id}, or `vitrina reindex`", id=Param("id")) from None
        return colour_descriptors([image.convert("RGB") for image in images], config)

    def similar_to_images(
        self, images: Sequence[Image.Image | bytes | str | Path], k: int = 10, space: str | None = None, *,
        where: Mapping[str, Any] | None = None, price: PriceRange | None = None,
    ) -> list[list[SearchHit]]:
        """Similar products for each query image (a PIL image, or a path or URL to load), in the image
        space or the fused space; where / price filter inside retrieval."""
        search = plan_image_search(self, k, space, where=where, price=price)
        pictures = [query_image(image, self.config) for image in images]
        if search.space != "fused" or not self.multi_image:
            return run_image_search(self, search, pictures)
        raw = self.encode_images(pictures, "image")  # fused: one vector per product; the image is named by raw looks
        fused = self.fusion.fused_query("image", self.fusion.photo_inputs(raw, pictures))
        answers = run_image_search(self, search, query_vectors=fused)
        return [self.name_images(hits, "image", vector[None, :]) for hits, vector in zip(answers, raw)]

    def similar_to_product(
        self, product_id: str, k: int = 10, space: str | None = None, product_filter: ProductFilter | None = None, *,
        where: Mapping[str, Any] | None = None, price: PriceRange | None = None,
    ) -> list[SearchHit]:
        """Products like a catalog product (itself excluded), from its stored vector in `space`
        (image: looks alike; fused: looks, words and shoppers alike; text: described alike)."""
        space = self._check_space(space or self.default_image_space())
        row = self.products.row_of(str(product_id))
        vectors = self.directory.spaces.get(self.similar_space(space))
        if vectors is None:
            raise QueryError("this index has no {space} vectors; index a catalog with images to use {id}",
                             space=space, id=Param("id"))
        vector = vectors.vector_of_row(row)
        if vector is None:
            why = "no image, or it failed at index time" if space == "image" else "nothing to build it from"
            raise QueryError(f"product {product_id!r} has no {space} vector ({why})")
        allowed = self.allowed_rows(product_filter, where=where, price=price)
        # several images per product: query with each of its images, a candidate scoring its best pair
        queries = np.asarray(vectors.vectors[vectors.positions_of_row(row)], dtype=np.float32) if vectors.multi \
            else vector[None, :]
        if self.groups is not None:  # one hit per product group, its own group left out
            return self.name_images(grouped_similar(self, vectors, queries, row, check_k(k), allowed), space, queries)
        scores, rows = vectors.search_pooled(queries, check_k(k) + 1, allowed)
        hits = self.hits(scores[0], rows[0], exclude=row, k=k)
        if space != "image" and self.multi_image:  # fused / text: the hit's image most like any of this product's
            images = self.directory.spaces["image"]
            own = images.positions_of_row(row)
            return self.name_images(hits, "image", np.asarray(images.vectors[own], dtype=np.float32)) if len(own) else hits
        return self.name_images(hits, space, queries)

    def image_roots(self) -> tuple[Path, ...]:
        """The folders this index's local images may be served from (recorded at indexing; older indexes:
        the catalog's folder; none known: nothing is served)."""
        from vitrina.engine.build.assemble import recorded_image_roots  # the build pipeline: not on a search's path

        return tuple(Path(root) for root in recorded_image_roots(self.manifest.catalog))

    def image_url_policy(self) -> ImageConfig:
        """The URL rules this index's images were fetched under (older indexes: public addresses only)."""
        from vitrina.engine.build.assemble import recorded_url_policy

        return recorded_url_policy(self.manifest.catalog)

    def image_source(self, product_id: str, ordinal: int = 0) -> str | None:
        """Where a product's image lives (absolute path or URL), from the catalog it was indexed from; `ordinal`
        picks one of several (None past its last)."""
        names = self.image_names(self.products.row_of(product_id))
        if not 0 <= ordinal < len(names):
            return None
        return resolve_image_source(names[ordinal], Path(self.manifest.catalog["source"]).parent)


def ties_by_row(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's hits best first, equal scores by row, the -1 padding last."""
    out_scores, out_rows = scores.copy(), rows.copy()
    for i, (s, r) in enumerate(zip(scores, rows)):
        order = np.lexsort((r, -s.astype(np.float64), r < 0))
        out_scores[i], out_rows[i] = s[order], r[order]
    return out_scores, out_rows


def _unpadded(scores: np.ndarray, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, its (scores, rows) without the -1 padding rows."""
    return [(s[r >= 0], r[r >= 0]) for s, r in zip(scores, rows)]


def query_image(image: Any, config: VitrinaConfig | None = None) -> Image.Image:
    """A query photo as an RGB image: a PIL image, encoded bytes (within the config's pixel and aspect limits),
    or a path (from the working folder) or http(s) URL loaded; ImageLoadError when it cannot be read."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (bytes, bytearray, memoryview)):
        limits = (config or VitrinaConfig()).encoders
        return decode_image(bytes(image), "the image bytes", limits.image_max_pixels, limits.image_max_aspect)
    if isinstance(image, (str, os.PathLike)):
        return load_image(resolve_image_source(os.fspath(image), Path.cwd()))
    raise ArgumentError("{image} must be a path, a URL, bytes or a PIL image, not {kind}",
                        image=Param("image"), kind=type(image).__name__)
