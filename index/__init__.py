"""FAISS-backed product indexes and the directories that persist them."""

from index.config import IndexConfig
from index.errors import IndexStoreError
from index.lexical import Analyzer, LexicalIndex, LexicalSettings
from index.manifest import FORMAT_VERSION, IndexManifest, SpaceInfo
from index.product_index import ProductIndex, default_factory
from index.products import ProductTable
from index.store import IndexDirectory, VectorSpace

__all__ = [
    "FORMAT_VERSION",
    "IndexConfig",
    "IndexDirectory",
    "IndexManifest",
    "IndexStoreError",
    "Analyzer",
    "LexicalIndex",
    "LexicalSettings",
    "ProductIndex",
    "ProductTable",
    "SpaceInfo",
    "VectorSpace",
    "default_factory",
]
