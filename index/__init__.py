"""FAISS-backed product indexes and the directories that persist them.

The names below are imported on first use (PEP 562), so importing one light module of this package
(`vitrina.index.errors`, `vitrina.index.manifest`) loads neither FAISS nor bm25s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitrina.lazy import lazy_names

_WHERE = {
    "FORMAT_VERSION": "vitrina.index.manifest",
    "IndexConfig": "vitrina.index.config",
    "IndexDirectory": "vitrina.index.store",
    "IndexManifest": "vitrina.index.manifest",
    "IndexStoreError": "vitrina.index.errors",
    "Analyzer": "vitrina.index.lexical",
    "LexicalIndex": "vitrina.index.lexical",
    "LexicalConfig": "vitrina.index.lexical",
    "ProductIndex": "vitrina.index.product_index",
    "ProductTable": "vitrina.index.products",
    "SpaceInfo": "vitrina.index.manifest",
    "VectorSpace": "vitrina.index.store",
    "default_factory": "vitrina.index.product_index",
}

if TYPE_CHECKING:
    from vitrina.index.config import IndexConfig
    from vitrina.index.errors import IndexStoreError
    from vitrina.index.lexical import Analyzer, LexicalConfig, LexicalIndex
    from vitrina.index.manifest import FORMAT_VERSION, IndexManifest, SpaceInfo
    from vitrina.index.product_index import ProductIndex, default_factory
    from vitrina.index.products import ProductTable
    from vitrina.index.store import IndexDirectory, VectorSpace


__getattr__ = lazy_names(__name__, _WHERE, globals())


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
