"""Exact dense leg of a micro-batch: FAISS Flat search vs one numpy (BLAS) matrix product + argpartition.

For each index and batch size (1, 4, 8, 32) runs the two in interleaved rounds on the stored vectors
(memory-mapped, as the server holds them) and prints the median CPU ms per batch and per query, the load
average, and whether the two give the same rows (up to float ties). One FAISS / BLAS thread, as in serving.

    (cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ../.venv/bin/python dense_batch.py \
        ../../main/benchmarks/out/hd-hybrid ../../main/benchmarks/out/hm-grouped)
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from vitrina.index.product_index import set_search_threads
from vitrina.index.store import IndexDirectory
from vitrina.index.dense_batch import matmul_top_k


def cpu_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(1000 * (time.process_time() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("indexes", type=Path, nargs="+")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 4, 8, 32])
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    set_search_threads(1)
    rng = np.random.default_rng(0)
    for path in args.indexes:
        space = IndexDirectory.load(path).spaces["text"]
        vectors = space.vectors
        for size in args.sizes:
            picks = rng.choice(len(vectors), size, replace=False)
            queries = np.ascontiguousarray(vectors[picks] + rng.normal(0, 0.05, (size, vectors.shape[1])), dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            faiss_ms, numpy_ms = [], []
            for _ in range(3):  # interleaved A/B rounds
                faiss_ms.append(cpu_ms(lambda: space.index.search(queries, args.depth), args.rounds))
                numpy_ms.append(cpu_ms(lambda: matmul_top_k(queries, vectors, space.rows, args.depth), args.rounds))
            fs, fr = space.index.search(queries, args.depth)
            ns, nr = matmul_top_k(queries, vectors, space.rows, args.depth)
            same = bool(np.allclose(fs, ns, atol=1e-5)) and all(
                set(a) == set(b) or np.allclose(np.sort(fs[i]), np.sort(ns[i]), atol=1e-5) for i, (a, b) in enumerate(zip(fr, nr)))
            result = {"index": path.name, "vectors": len(vectors), "batch": size,
                      "faiss_ms": round(min(faiss_ms), 2), "numpy_ms": round(min(numpy_ms), 2),
                      "faiss_ms_per_query": round(min(faiss_ms) / size, 2), "numpy_ms_per_query": round(min(numpy_ms) / size, 2),
                      "same_rows": same, "identical_order": bool((fr == nr).all()), "loadavg": round(os.getloadavg()[0], 2)}
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
