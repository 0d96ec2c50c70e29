"""ProductIndex: inner-product FAISS search over normalised vectors, on the GPU when there is one."""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
from pathlib import Path

import faiss
import numpy as np

from vitrina.index.dense_batch import matmul_top_k
from vitrina.index.config import IndexConfig
from vitrina.index.errors import IndexStoreError
from vitrina.errors import Param

log = logging.getLogger(__name__)

FLAT_FACTORY = "Flat"  # exact search; such an index is rebuilt from the stored vectors at load (index.store)
FLAT_MAX = 30_000  # above it exact search costs more than a serving budget on 2 cores (RESULTS.md, issue 19)
HNSW_MAX = 2_000_000
TRAIN_SAMPLE_PER_CENTROID = 64
DEFAULT_EF_SEARCH = 128  # HNSW search effort when neither the config nor the manifest sets one
DEFAULT_NPROBE = 32  # IVF lists searched, likewise
DEFAULT_REFINE_K_FACTOR = 4  # an index with a refine stage re-ranks 4k approximate hits exactly


def default_factory(n: int, dim: int) -> str:
    """Exact search for small catalogs, HNSW for mid-size, IVF-PQ when memory matters."""
    if n < FLAT_MAX:
        return FLAT_FACTORY
    if n < HNSW_MAX:
        return "HNSW32"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    m = next(m for m in (dim // 8, dim // 6, dim // 4, dim // 2, dim) if m and dim % m == 0)
    return f"IVF{nlist},PQ{m}"


_search_threads: int | None = None  # FAISS's OpenMP threads per search; None: OpenMP's default


def set_search_threads(threads: int | None) -> None:
    """OpenMP threads FAISS uses per search, in every thread of the process. A server answering one
    query per request wants 1: FAISS's threads spin between searches and take the cores from
    concurrent requests. (OpenMP keeps this setting per thread, so each search applies it.)"""
    global _search_threads
    _search_threads = threads
    if threads is not None:
        faiss.omp_set_num_threads(threads)


def _apply_search_threads() -> None:
    if _search_threads is not None and faiss.omp_get_max_threads() != _search_threads:
        faiss.omp_set_num_threads(_search_threads)  # this thread has not been told yet


MMAP_FLAGS = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)  # newer FAISS also maps flat codes


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gpu_cloner_options(config: IndexConfig):
    """How an index spreads over several GPUs: split into shards (IndexShards, for indexes bigger than
    one GPU) or copied whole to each (IndexReplicas, for throughput)."""
    options = faiss.GpuMultipleClonerOptions()
    options.shard = config.gpu_shard
    options.useFloat16 = config.gpu_float16
    return options


def _train(base: faiss.Index, sample: np.ndarray, config: IndexConfig) -> faiss.Index:
    """Train on the GPUs when FAISS sees any (k-means is the slow part of an IVF build), else on the
    CPU; an index type FAISS cannot train on a GPU is trained on the CPU, with a warning."""
    if config.use_gpu is False or gpu_count() == 0:
        base.train(sample)
        return base
    try:
        on_gpu = faiss.index_cpu_to_all_gpus(base, co=gpu_cloner_options(config))
        on_gpu.train(sample)
        return faiss.index_gpu_to_cpu(on_gpu)
    except (RuntimeError, AttributeError) as exc:
        log.warning("training %s on the GPU failed (%s); training on the CPU", type(base).__name__, exc)
        base.train(sample)
        return base


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


_DEFERRED_BUILD = threading.Lock()  # deferred indexes build one at a time (ProductIndex.deferred)
DEFERRED_SEARCH_MAX = 7  # queries a deferred index answers by a matrix product over its vectors, unbuilt (a CLI
# search has one: building the FAISS copy of 54,667 vectors cost ~40 ms and 80 MiB); a larger batch builds it
DEFERRED_SEARCHES = 8  # searches answered so before building anyway: FAISS answers one query in about half the
# time of the product (54,667 x 384: 3.3 vs 6.4 ms), so a process searching on repays the build by then


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k (scores, rows) of `queries` over `vectors` keyed by `rows`, as a Flat index
    answers it: -1 rows (lowest float32 scores) past the last match; `allowed`, a mask over product rows, keeps only those."""
    rows = np.asarray(rows, dtype=np.int64)
    if allowed is not None:
        positions = np.flatnonzero(np.asarray(allowed, dtype=bool)[rows])
        vectors, rows = vectors[positions], rows[positions]
    return matmul_top_k(queries, vectors, rows, k, pad=np.finfo(np.float32).min)  # FAISS's empty slots


class ProductIndex:
    """Vectors keyed by int64 product rows; search returns (scores, rows) with -1 for empty slots.

    The CPU index is the one saved; searches run on a GPU copy when faiss sees a GPU and can
    place this index type there, else on the CPU. Callers never see which.
    """

    def __init__(self, cpu_index: faiss.Index, factory: str, config: IndexConfig | None = None,
                 tuned: dict[str, int] | None = None) -> None:
        """tuned: search settings chosen at build time ({"nprobe": 16}); the config's own win over them."""
        self.config = config or IndexConfig()
        self.factory = factory
        tuned = tuned or {}
        self.search_params = {
            "efSearch": self.config.hnsw_ef_search or tuned.get("efSearch") or DEFAULT_EF_SEARCH,
            "nprobe": self.config.ivf_nprobe or tuned.get("nprobe") or DEFAULT_NPROBE,
            "k_factor_rf": tuned.get("k_factor_rf") or DEFAULT_REFINE_K_FACTOR,  # refine stages (",RFlat") only
        }
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
                    "index type {factory!r} needs at least {needed} vectors to train; there are {n}. "
                    "Use {flat} for a catalog this small.", factory=factory, needed=needed, n=n,
                    flat=Param("index_factory", "Flat")
                )
            sample_size = min(n, max(needed * TRAIN_SAMPLE_PER_CENTROID, 10_000))
            sample = vectors[np.random.default_rng(0).choice(n, sample_size, replace=False)]
            base = _train(base, sample, config)
        index = faiss.IndexIDMap2(base)
        if n:
            index.add_with_ids(vectors, rows)
        return cls(index, factory, config)

    @classmethod
    def deferred(cls, vectors: np.ndarray, rows: np.ndarray, factory: str, config: IndexConfig | None = None) -> "ProductIndex":
        """An exact index over `vectors` built on its first use (`build`), not now: loading an index directory
        does not pay for the spaces a query never searches, and a search of a few queries is answered from the
        vectors (`exact_top_k`) without building it. `ensure_built` builds it at once."""
        index = cls.__new__(cls)
        index.config = config or IndexConfig()
        index.factory = factory
        index.search_params = {"efSearch": index.config.hnsw_ef_search or DEFAULT_EF_SEARCH,
                               "nprobe": index.config.ivf_nprobe or DEFAULT_NPROBE, "k_factor_rf": DEFAULT_REFINE_K_FACTOR}
        index._pending = (vectors, rows)
        index._unbuilt_searches = 0
        return index

    def ensure_built(self) -> None:
        """Build a deferred index now (a server before it answers, and before it forks workers)."""
        self._cpu  # noqa: B018 - the first use builds it

    def __getattr__(self, name: str):
        """The FAISS index of a deferred index, built on first use (once, under a lock)."""
        if name not in ("_cpu", "_search_index", "on_gpu") or "_pending" not in self.__dict__:
            raise AttributeError(name)
        with _DEFERRED_BUILD:
            if "_pending" in self.__dict__:
                vectors, rows = self.__dict__["_pending"]
                built = type(self).build(vectors, rows, self.factory, self.config)
                self._apply_search_parameters(built._cpu)
                self.__dict__.update(_cpu=built._cpu, _search_index=built._search_index, on_gpu=built.on_gpu)
                del self.__dict__["_pending"]
        return self.__dict__[name]

    def refilled(self, vectors: np.ndarray, rows: np.ndarray) -> "ProductIndex":
        """A new index of the same type holding exactly `vectors` under `rows`, reusing this one's
        training (IVF centroids, PQ codebooks) and search settings: no k-means, only the adds."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        fresh = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        if not fresh.is_trained:  # copy the trained structures, drop the vectors
            fresh = faiss.clone_index(self._base)
            fresh.reset()
        index = faiss.IndexIDMap2(fresh)
        if len(rows):
            index.add_with_ids(vectors, rows)
        return ProductIndex(index, self.factory, self.config, dict(self.search_params))

    def _apply_search_parameters(self, index: faiss.Index) -> None:
        params = faiss.ParameterSpace()
        for name, value in self.search_params.items():
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
            gpu_index = faiss.index_cpu_to_all_gpus(index, co=gpu_cloner_options(self.config))
        except (RuntimeError, AttributeError) as exc:
            log.warning("index type %s cannot run on the GPU (%s); searching on the CPU", self.factory, exc)
            return index, False
        self._apply_search_parameters(gpu_index)
        return gpu_index, True

    @property
    def ntotal(self) -> int:
        pending = self.__dict__.get("_pending")
        return len(pending[0]) if pending is not None else int(self._cpu.ntotal)

    @property
    def dim(self) -> int:
        pending = self.__dict__.get("_pending")
        return int(pending[0].shape[1]) if pending is not None else int(self._cpu.d)

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
        pending = self.__dict__.get("_pending")
        if pending is not None and len(queries) <= DEFERRED_SEARCH_MAX and self._unbuilt_searches < DEFERRED_SEARCHES:
            self._unbuilt_searches += 1  # not built: a brute-force product instead (a long-lived user builds soon)
            return exact_top_k(queries, *pending, k, allowed)
        _apply_search_threads()
        if allowed is None:
            return self._search_index.search(queries, k)
        bitmap = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")  # bit r: row r allowed
        params = self._selector_parameters(faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)))
        return self._cpu.search(queries, k, params=params)  # `bitmap` stays alive through the call

    @property
    def tunable_parameter(self) -> str | None:
        """The knob trading speed for recall: "nprobe" (IVF), "efSearch" (HNSW), or None (exact)."""
        if "_pending" in self.__dict__:
            return None
        base = self._base
        if faiss.try_extract_index_ivf(base) is not None:  # also under a refine stage (",RFlat")
            return "nprobe"
        if isinstance(base, faiss.IndexHNSW):
            return "efSearch"
        return None

    def parameter_limit(self, name: str) -> int:
        """The largest useful value of a search knob (nprobe cannot exceed the list count)."""
        return faiss.extract_index_ivf(self._base).nlist if name == "nprobe" else 1 << 16

    def set_search_parameter(self, name: str, value: int) -> None:
        """Change a search knob ("nprobe", "efSearch") for every later search."""
        if name not in self.search_params:
            raise IndexStoreError(f"unknown search parameter {name!r}; use nprobe or efSearch")
        self.search_params[name] = int(value)
        self._apply_search_parameters(self._cpu)
        if self.on_gpu:
            self._apply_search_parameters(self._search_index)

    @property
    def is_exact(self) -> bool:
        """True for brute-force (Flat) indexes, whose filtered searches always find every match."""
        if "_pending" in self.__dict__:  # deferred: a Flat index by construction
            return True
        return isinstance(self._base, faiss.IndexFlat)

    @property
    def stores_file(self) -> bool:
        """Whether saving an index directory writes this index's own file: not for a plain exact inner-product
        index (factory "Flat"), which holds nothing but the vectors and is rebuilt from them at load."""
        if "_pending" in self.__dict__:  # deferred: a plain Flat index by construction
            return False
        base = self._base
        return not (self.factory.strip() == FLAT_FACTORY and type(base) in (faiss.IndexFlatIP, faiss.IndexFlat)
                    and base.metric_type == faiss.METRIC_INNER_PRODUCT)

    @property
    def _base(self) -> faiss.Index:
        return faiss.downcast_index(self._cpu.index) if isinstance(self._cpu, faiss.IndexIDMap) else self._cpu

    def _selector_parameters(self, selector: faiss.IDSelector) -> faiss.SearchParameters:
        """Search parameters of the base index's own type (FAISS refuses others), carrying `selector`."""
        base = self._base
        if isinstance(base, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.search_params["nprobe"], base.nlist))
        if isinstance(base, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.search_params["efSearch"])
        return faiss.SearchParameters(sel=selector)

    def save(self, path: Path) -> None:
        """Write the index; a failed write (full disk, ...) raises OSError like any other file write."""
        try:
            faiss.write_index(self._cpu, str(path))
        except RuntimeError as exc:  # FAISS reports write errors as RuntimeError, with strerror in the text
            text = str(exc)
            code = next((n for n, name in errno.errorcode.items() if f'({os.strerror(n)})' in text), errno.EIO)
            raise OSError(code, os.strerror(code), str(path)) from exc

    @classmethod
    def load(cls, path: Path, factory: str, config: IndexConfig | None = None, mmap: bool | None = None,
             tuned: dict[str, int] | None = None) -> "ProductIndex":
        """mmap: map the file instead of reading it (IVF lists and flat codes stay on disk, paged in
        by the OS); None follows config.mmap, whose None maps files bigger than half the RAM."""
        if not path.is_file():
            raise IndexStoreError(f"index file missing: {path}")
        config = config or IndexConfig()
        if mmap is None:
            mmap = config.mmap if config.mmap is not None else path.stat().st_size > physical_memory() // 2
        try:
            cpu = faiss.read_index(str(path), MMAP_FLAGS if mmap else 0)
        except RuntimeError as exc:
            raise IndexStoreError(f"{path} is not a readable FAISS index: {exc}") from None
        return cls(cpu, factory, config, tuned)
