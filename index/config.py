"""Settings for building and searching FAISS indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

from index.lexical import LexicalSettings


@dataclass(frozen=True)
class IndexConfig:
    """factory: a FAISS index_factory string, or None to choose by catalog size.
    use_gpu: None searches on the GPU when faiss sees one; False forces CPU.
    lexical: BM25 settings for the lexical index built beside the vectors, or None for no lexical index.
    """

    factory: str | None = None
    use_gpu: bool | None = None
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 32
    lexical: LexicalSettings | None = field(default_factory=LexicalSettings)
