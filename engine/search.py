"""SearchSession: load an index directory once, then answer text searches and image lookups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from encoders import Encoder, load_image_encoder, load_image_space_text_encoder, load_text_encoder
from engine.catalog import resolve_image_source
from engine.config import VitrinaConfig
from engine.errors import QueryError
from index import IndexDirectory

SPACES = ("text", "image")
MAX_K = 10_000


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(float(self.score), 6), **self.metadata}


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def clean_query(query: str) -> str:
    text = " ".join(str(query).split())
    if not text:
        raise QueryError("the query is empty; give some words to search for")
    return text


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
        self.path = Path(path)
        self.config = config or VitrinaConfig()
        self.directory = IndexDirectory.load(self.path, self.config.index)
        self.manifest = self.directory.manifest
        self.products = self.directory.products
        self._models = {"text": text_model, "image": image_model}
        self._encoders: dict[str, Encoder] = {}

    def encoder(self, role: str) -> Encoder:
        """The encoder for 'text' (text space), 'image' (image space) or 'text->image' (CLIP text tower)."""
        if role not in self._encoders:
            space = "image" if role == "text->image" else role
            info = self.manifest.space(space)
            spec = self._models[space] or info.model
            if role == "text":
                encoder = load_text_encoder(spec, self.config.encoders)
            elif role == "image":
                encoder = load_image_encoder(spec, self.config.encoders)
            else:
                encoder = load_image_space_text_encoder(spec, self.config.encoders)
            self.manifest.check_encoder(space, encoder.name, encoder.dim)
            self._encoders[role] = encoder
        return self._encoders[role]

    def _hits(self, scores: np.ndarray, rows: np.ndarray, exclude: int | None = None, k: int | None = None):
        hits = [
            SearchHit(self.products.ids[row], float(score), self.products.metadata(row))
            for score, row in zip(scores, rows)
            if row >= 0 and row != exclude
        ]
        return hits[:k] if k else hits

    def search_vectors(self, space: str, vectors: np.ndarray, k: int) -> list[list[SearchHit]]:
        self.manifest.space(space)  # a clear error when the index has no such vectors
        scores, rows = self.directory.spaces[space].index.search(vectors, check_k(k))
        return [self._hits(s, r) for s, r in zip(scores, rows)]

    def search(self, queries: Sequence[str], k: int = 10, space: str = "text") -> list[list[SearchHit]]:
        """Text queries against the text vectors, or (CLIP image models only) the image vectors."""
        if space not in SPACES:
            raise QueryError(f"unknown space {space!r}; choose one of {', '.join(SPACES)}")
        cleaned = [clean_query(q) for q in queries]
        encoder = self.encoder("text" if space == "text" else "text->image")
        return self.search_vectors(space, encoder.encode(cleaned), k)

    def similar_to_images(self, images: Sequence[Image.Image], k: int = 10) -> list[list[SearchHit]]:
        """Visually similar products for each query image."""
        return self.search_vectors("image", self.encoder("image").encode(list(images)), k)

    def similar_to_product(self, product_id: str, k: int = 10) -> list[SearchHit]:
        """Products that look like a catalog product (itself excluded), from its stored image vector."""
        row = self.products.row_of(str(product_id))
        space = self.directory.spaces.get("image")
        if space is None:
            raise QueryError("this index has no image vectors; index a catalog with images to use --id")
        vector = space.vector_of_row(row)
        if vector is None:
            raise QueryError(f"product {product_id!r} has no image vector (no image, or it failed at index time)")
        scores, rows = space.index.search(vector[None, :], check_k(k) + 1)
        return self._hits(scores[0], rows[0], exclude=row, k=k)

    def image_source(self, product_id: str) -> str | None:
        """Where a product's image lives (absolute path or URL), from the catalog it was indexed from."""
        field = self.manifest.catalog.get("image_field")
        value = self.products.metadata(self.products.row_of(product_id)).get(field) if field else None
        if not value:
            return None
        return resolve_image_source(str(value), Path(self.manifest.catalog["source"]).parent)
