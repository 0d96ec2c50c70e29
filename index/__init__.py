"""FAISS-backed product indexes and the directories that persist them."""

from vitrina.index.config import IndexConfig
from vitrina.index.errors import IndexStoreError
from vitrina.index.lexical import Analyzer, LexicalIndex, LexicalConfig
from vitrina.index.manifest import FORMAT_VERSION, IndexManifest, SpaceInfo
from vitrina.index.product_index import ProductIndex, default_factory
from vitrina.index.products import ProductTable
from vitrina.index.store import IndexDirectory, VectorSpace

__all__ = [
    "FORMAT_VERSION",
    "IndexConfig",
    "IndexDirectory",
    "IndexManifest",
    "IndexStoreError",
    "Analyzer",
    "LexicalIndex",
    "LexicalConfig",
    "ProductIndex",
    "ProductTable",
    "SpaceInfo",
    "VectorSpace",
    "default_factory",
]
