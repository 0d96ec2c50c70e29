"""Settings for building and searching FAISS indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

from vitrina.index.lexical import LexicalConfig


@dataclass(frozen=True)
class IndexConfig:
    """factory: a FAISS index_factory string, or None to choose by catalog size.
    use_gpu: None searches on the GPU when faiss sees one; False forces CPU.
    hnsw_ef_search / ivf_nprobe: search effort of HNSW / IVF indexes; None takes the value tuned when the
    index was built (recorded in its manifest), else 128 / 32.
    lexical: BM25 settings for the lexical index built beside the vectors, or None for no lexical index.
    """

    factory: str | None = None
    use_gpu: bool | None = None
    hnsw_ef_search: int | None = None
    ivf_nprobe: int | None = None
    lexical: LexicalConfig | None = field(default_factory=LexicalConfig)
    gpu_shard: bool = False  # several GPUs: split the index among them (IndexShards) instead of copying it (IndexReplicas)
    gpu_float16: bool = False  # store vectors on the GPU in float16 (half the GPU memory)
    mmap: bool | None = None  # memory-map FAISS files on load; None: those bigger than half the RAM
