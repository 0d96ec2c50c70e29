"""Settings for building and searching FAISS indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

from vitrina.index.lexical import LexicalConfig


VECTOR_DTYPES = ("float32", "float16")  # how vectors may be stored; float16: Home Depot top-10 overlap 0.99+ (issue 19)


@dataclass(frozen=True)
class IndexConfig:
    """factory: a FAISS index_factory string, or None to choose by catalog size.
    use_gpu: None searches on the GPU when faiss sees one; False forces CPU.
    hnsw_ef_search / ivf_nprobe: search effort of HNSW / IVF indexes; None takes the value tuned when the
    index was built (recorded in its manifest), else 128 / 32.
    lexical: BM25 settings for the lexical index built beside the vectors, or None for no lexical index.
    vector_dtype: how the stored vectors are written: "float32", or "float16" (half the disk; searches compute
    in float32 all the same; on Home Depot dense/hybrid top-10 overlap with float32 is 0.999/0.9998, nDCG@10 equal);
    None (the default): float32 for a new index, and what the live version stores for a reindex.
    """

    factory: str | None = None
    use_gpu: bool | None = None
    hnsw_ef_search: int | None = None
    ivf_nprobe: int | None = None
    lexical: LexicalConfig | None = field(default_factory=LexicalConfig)
    gpu_shard: bool = False  # several GPUs: split the index among them (IndexShards) instead of copying it (IndexReplicas)
    gpu_float16: bool = False  # store vectors on the GPU in float16 (half the GPU memory)
    mmap: bool | None = None  # memory-map FAISS files on load; None: those bigger than half the RAM
    vector_dtype: str | None = None  # <space>.vectors.npy on disk: "float32", "float16" (half the bytes); None: see above

    def __post_init__(self) -> None:
        if self.vector_dtype is not None and self.vector_dtype not in VECTOR_DTYPES:
            from vitrina.index.errors import IndexStoreError

            raise IndexStoreError(f"vector_dtype must be one of {', '.join(VECTOR_DTYPES)}, not {self.vector_dtype!r}")

    @property
    def stored_dtype(self) -> str:
        """How a build writes vectors: `vector_dtype`, float32 when it is None."""
        return self.vector_dtype or "float32"
