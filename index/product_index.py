"""ProductIndex: inner-product FAISS search over normalised vectors, on the GPU when there is one."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from index.config import IndexConfig
from index.errors import IndexStoreError

log = logging.getLogger(__name__)

FLAT_MAX = 100_000
HNSW_MAX = 2_000_000
TRAIN_SAMPLE_PER_CENTROID = 64


def default_factory(n: int, dim: int) -> str:
    """Exact search for small catalogs, HNSW for mid-size, IVF-PQ when memory matters."""
    if n < FLAT_MAX:
        return "Flat"
    if n < HNSW_MAX:
        return "HNSW32"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    m = next(m for m in (dim // 8, dim // 6, dim // 4, dim // 2, dim) if m and dim % m == 0)
    return f"IVF{nlist},PQ{m}"


def set_search_threads(threads: int | None) -> None:
    """OpenMP threads FAISS uses per search (process-wide). A server answering one query per request
    wants 1: FAISS's threads spin between searches and take the cores from concurrent requests."""
    if threads is not None:
        faiss.omp_set_num_threads(threads)


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


class ProductIndex:
    """Vectors keyed by int64 product rows; search returns (scores, rows) with -1 for empty slots.

    The CPU index is the one saved; searches run on a GPU copy when faiss sees a GPU and can
    place this index type there, else on the CPU. Callers never see which.
    """

    def __init__(self, cpu_index: faiss.Index, factory: str, config: IndexConfig | None = None) -> None:
        self.config = config or IndexConfig()
        self.factory = factory
        self._cpu = cpu_index
        self._apply_search_parameters(self._cpu)
        self._search_index, self.on_gpu = self._place(cpu_index)

    @classmethod
    def build(
        cls, vectors: np.ndarray, rows: np.ndarray, factory: str | None = None, config: IndexConfig | None = None
    ) -> "ProductIndex":
        """Build an index over `vectors` (n x d, normalised) keyed by `rows` (n int64)."""
        config = config or IndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if vectors.ndim != 2 or len(vectors) != len(rows):
            raise IndexStoreError(f"expected n x d vectors and n rows, got {vectors.shape} and {rows.shape}")
        n, dim = vectors.shape
        factory = factory or config.factory or default_factory(n, dim)
        try:
            base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise IndexStoreError(f"FAISS cannot build index type {factory!r}: {exc}") from None
        if not base.is_trained:
            ivf = faiss.try_extract_index_ivf(base)
            needed = ivf.nlist if ivf is not None else 256
            if n < needed:
                raise IndexStoreError(
                    f"index type {factory!r} needs at least {needed} vectors to train; there are {n}. "
                    "Use --index-factory Flat for a catalog this small."
                )
            sample_size = min(n, max(needed * TRAIN_SAMPLE_PER_CENTROID, 10_000))
            sample = vectors[np.random.default_rng(0).choice(n, sample_size, replace=False)]
            base.train(sample)
        index = faiss.IndexIDMap2(base)
        if n:
            index.add_with_ids(vectors, rows)
        return cls(index, factory, config)

    def _apply_search_parameters(self, index: faiss.Index) -> None:
        params = faiss.ParameterSpace()
        for name, value in (("efSearch", self.config.hnsw_ef_search), ("nprobe", self.config.ivf_nprobe)):
            try:
                params.set_index_parameter(index, name, value)
            except RuntimeError:
                pass  # this index type has no such knob

    def _place(self, index: faiss.Index) -> tuple[faiss.Index, bool]:
        want_gpu = self.config.use_gpu if self.config.use_gpu is not None else gpu_count() > 0
        if not want_gpu:
            return index, False
        if gpu_count() == 0:
            raise IndexStoreError("use_gpu is set but FAISS sees no GPU (is faiss-gpu installed?)")
        try:
            gpu_index = faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError) as exc:
            log.warning("index type %s cannot run on the GPU (%s); searching on the CPU", self.factory, exc)
            return index, False
        self._apply_search_parameters(gpu_index)
        return gpu_index, True

    @property
    def ntotal(self) -> int:
        return int(self._cpu.ntotal)

    @property
    def dim(self) -> int:
        return int(self._cpu.d)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query row; rows are -1 where fewer than k vectors exist.

        allowed: a boolean mask over product rows; only those rows are searched (a FAISS IDSelector
        inside the search, on the CPU index). An approximate index may then find fewer than k.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise IndexStoreError(f"query vectors have shape {queries.shape}; this index holds {self.dim}-d vectors")
        if k < 1:
            raise IndexStoreError(f"k must be at least 1, got {k}")
        if allowed is None:
            return self._search_index.search(queries, k)
        bitmap = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")  # bit r: row r allowed
        params = self._selector_parameters(faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)))
        return self._cpu.search(queries, k, params=params)  # `bitmap` stays alive through the call

    @property
    def is_exact(self) -> bool:
        """True for brute-force (Flat) indexes, whose filtered searches always find every match."""
        return isinstance(self._base, faiss.IndexFlat)

    @property
    def _base(self) -> faiss.Index:
        return faiss.downcast_index(self._cpu.index) if isinstance(self._cpu, faiss.IndexIDMap) else self._cpu

    def _selector_parameters(self, selector: faiss.IDSelector) -> faiss.SearchParameters:
        """Search parameters of the base index's own type (FAISS refuses others), carrying `selector`."""
        base = self._base
        if isinstance(base, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.config.ivf_nprobe, base.nlist))
        if isinstance(base, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.config.hnsw_ef_search)
        return faiss.SearchParameters(sel=selector)

    def save(self, path: Path) -> None:
        faiss.write_index(self._cpu, str(path))

    @classmethod
    def load(cls, path: Path, factory: str, config: IndexConfig | None = None, mmap: bool = False) -> "ProductIndex":
        if not path.is_file():
            raise IndexStoreError(f"index file missing: {path}")
        try:
            cpu = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
        except RuntimeError as exc:
            raise IndexStoreError(f"{path} is not a readable FAISS index: {exc}") from None
        return cls(cpu, factory, config)
