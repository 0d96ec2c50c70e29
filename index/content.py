"""ProductContent: what each product's vectors were made from (its text, and hashes of text and image).

Stored as content.parquet in index directories built by `vitrina reindex`/`upsert`, row-aligned with
products.parquet. A re-index reuses the vectors of products whose hashes did not change, and an
upsert or delete rebuilds the BM25 index from the stored texts without the catalog.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vitrina.index.errors import IndexStoreError

CONTENT_FILE = "content.parquet"


def content_hash(data: bytes | str) -> str:
    """A short, stable digest of text or image bytes."""
    return hashlib.blake2b(data.encode("utf-8") if isinstance(data, str) else data, digest_size=16).hexdigest()


def join_image_hashes(digests: list[str]) -> str:
    """A product's image hash: its images' digests by ordinal joined by `|` ("" for unreadable ones); "" when
    none could be read. A product with one image has that image's digest, as before several were allowed."""
    return "|".join(digests) if any(digests) else ""


def split_image_hashes(joined: str) -> list[str]:
    """The per-image digests of a product's image hash, by ordinal."""
    return joined.split("|") if joined else []


@dataclass
class ProductContent:
    ids: list[str]
    texts: list[str]
    text_hashes: list[str]
    image_hashes: list[str]  # "" where a product has no image (or none could be read); several: `join_image_hashes`

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.texts) == len(self.text_hashes) == len(self.image_hashes):
            raise IndexStoreError("product content columns differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: list[int]) -> "ProductContent":
        return ProductContent(*([column[i] for i in positions] for column in (self.ids, self.texts, self.text_hashes, self.image_hashes)))

    def __add__(self, other: "ProductContent") -> "ProductContent":
        return ProductContent(self.ids + other.ids, self.texts + other.texts, self.text_hashes + other.text_hashes,
                              self.image_hashes + other.image_hashes)

    def save(self, path: Path) -> None:
        table = pa.table({"id": pa.array(self.ids, pa.string()), "text": pa.array(self.texts, pa.string()),
                          "text_hash": pa.array(self.text_hashes, pa.string()),
                          "image_hash": pa.array(self.image_hashes, pa.string())})
        pq.write_table(table, path)

    @classmethod
    def load(cls, path: Path) -> "ProductContent | None":
        """The stored content, or None for index directories made without it (`vitrina index`)."""
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
            return cls(*(table.column(c).to_pylist() for c in ("id", "text", "text_hash", "image_hash")))
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise IndexStoreError(f"{path} is damaged: {exc}") from None
