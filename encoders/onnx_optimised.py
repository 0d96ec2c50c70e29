"""ONNX Runtime sessions from a cached, already optimised graph: the optimisation runs once per machine.

Creating a session optimises the graph each time (~40 ms CPU of a fresh query process's ~100 ms session on
MiniLM int8). The first session saves the optimised graph (`SessionOptions.optimized_model_filepath`) into
the ONNX cache; later ones load it with optimisation off. ONNX Runtime warns that a saved optimised graph is
specific to the hardware and version it was made on, so the cache key holds the onnxruntime version, the
machine and its CPU flags, and the source graph's digest. Each cached graph has a sidecar with its size and
CRC-32 (checked before use: a damaged or truncated file is removed and the graph optimised again). Anything
that goes wrong (an unwritable cache, a file ONNX Runtime refuses) falls back to the plain session.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import mmap
import os
import platform
import tempfile
import zlib
from pathlib import Path
from typing import Any

from vitrina.encoders.files import digest_file

log = logging.getLogger("vitrina")
CACHE_DIR = "optimised"  # under the ONNX cache (encoders.onnx_runtime.default_cache_dir)
SIDECAR = ".json"


@functools.cache
def machine_key() -> str:
    """What makes an optimised graph hardware-specific: the architecture and the CPU's instruction-set flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].strip() for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()}|{' '.join(sorted(flags.split()))}"


def file_crc(path: Path) -> str:
    """Size and CRC-32 of a file (a damage check, not a security one: the cache is the user's own)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return "0:00000000"
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:  # no copy of the graph's bytes
            return f"{size}:{zlib.crc32(mapped):08x}"


def cache_key(graph_digest: str, ort_version: str) -> str:
    """The cached graph's name: onnxruntime version, machine and source graph, hashed."""
    return hashlib.sha256(f"{ort_version}|{machine_key()}|{graph_digest}".encode()).hexdigest()[:24]


def graph_digest(path: Path, recorded: str | None = None) -> str:
    """The source graph's sha256: the export's recorded checksum when it has one (verified by whoever loads
    the export), else hashed here."""
    return recorded or digest_file(path)


def usable_cached(graph: Path) -> bool:
    """Whether a cached optimised graph is whole: its sidecar's size and CRC-32 match; a damaged one is removed."""
    sidecar = graph.with_name(graph.name + SIDECAR)
    if not graph.is_file() or not sidecar.is_file():
        return False
    try:
        ok = json.loads(sidecar.read_text()).get("crc") == file_crc(graph)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        log.warning("cached optimised graph %s is damaged; optimising the graph again", graph)
        remove(graph)
    return ok


def remove(graph: Path) -> None:
    for path in (graph, graph.with_name(graph.name + SIDECAR)):
        try:
            path.unlink()
        except OSError:
            pass


def optimised_session(source: Path, options: Any, providers: list[Any], cache_dir: Path,
                      recorded_digest: str | None = None) -> Any:
    """An `onnxruntime.InferenceSession` of `source` (options at their full optimisation level) that reuses
    the optimised graph cached under `cache_dir`, or optimises and caches it. CPU sessions only: other
    providers get the plain session."""
    import onnxruntime as ort

    if any((p[0] if isinstance(p, tuple) else p) != "CPUExecutionProvider" for p in providers):
        return ort.InferenceSession(str(source), options, providers=providers)
    try:
        cached = cache_dir / CACHE_DIR / f"{cache_key(graph_digest(source, recorded_digest), ort.__version__)}.onnx"
    except OSError:
        return ort.InferenceSession(str(source), options, providers=providers)
    if usable_cached(cached):
        level = options.graph_optimization_level
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(cached), options, providers=providers)
        except Exception as exc:  # onnxruntime's own Fail/InvalidGraph types
            log.warning("cached optimised graph %s could not be loaded (%s); optimising the graph again", cached, exc)
            remove(cached)
            options.graph_optimization_level = level
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cached.parent, prefix=".partial-", suffix=".onnx")
        os.close(fd)
    except OSError:  # a read-only cache: optimise in memory, as before
        return ort.InferenceSession(str(source), options, providers=providers)
    options.optimized_model_filepath = partial
    try:
        session = ort.InferenceSession(str(source), options, providers=providers)
    except Exception:  # a graph ONNX Runtime cannot save: the plain session (raising its own error if any)
        remove(Path(partial))
        options.optimized_model_filepath = ""
        return ort.InferenceSession(str(source), options, providers=providers)
    try:
        Path(partial + SIDECAR).write_text(json.dumps({"crc": file_crc(Path(partial)), "source": str(source),
                                                       "onnxruntime": ort.__version__}) + "\n")
        os.replace(partial + SIDECAR, str(cached) + SIDECAR)  # sidecar first: a graph without one is never used
        os.replace(partial, cached)
    except OSError:
        pass  # the session is fine; the graph is optimised again next time
    finally:
        for leftover in (partial, partial + SIDECAR):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return session
