"""Exported image graphs on OpenVINO's CPU runtime: the fast path for embedding catalog photos.

The same `model.onnx` that ONNX Runtime runs (uint8 pixels in, unit vector out) is compiled by OpenVINO.
With precision "auto" it computes in bf16 on a CPU that has it natively (AVX512-BF16, AMX): EfficientNet-Lite0
3.4x less CPU per photo than ONNX Runtime fp32, cosine to fp32 0.9995, image-lookup precision@10 +0.07%
(benchmarks/RESULTS.md, issue 19); precision "fp32" gives ONNX Runtime's vectors (cosine 1.00000). Runtime
"auto" runs catalog photos so, and photo queries against such a catalog too (`query_config`), so an uploaded
catalog photo gets its stored vector back. Catalog photos run as one stream of one thread per core, batches
submitted without waiting (`submit`) in requests of STREAM_BATCH photos (16% less CPU than requests of 32, and
4-13% less than one batch on every core). Compiled graphs are cached on disk (the ONNX cache's `openvino`
folder), so a new process compiles in about 0.2 s. Chosen by
`EncoderConfig.runtime` (shared with the text encoders, whose rule lives in
`encoders.onnx_runtime.openvino_precision`; `wants_openvino` is the rule for images).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.encoders.base import l2_normalize
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.onnx_runtime import OnnxImageEncoder, OnnxModelInfo, openvino_cache, usable_cores

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
STREAM_BATCH = 8  # photos per request on a stream: 16% less CPU per photo than 32 (benchmarks/RESULTS.md, issue 19)


def openvino_available() -> bool:
    """Whether the optional `openvino` package can be imported (vitrina[openvino])."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def wants_openvino(config: EncoderConfig, gpu_provider: bool) -> bool:
    """Whether an exported image graph runs on OpenVINO: asked for, or "auto" for catalog photos on a CPU
    with OpenVINO installed and precision auto or fp32 (queries follow the catalog: `query_config`)."""
    if config.runtime == "openvino":
        return True
    if config.runtime != "auto" or not config.catalog or config.precision not in ("auto", "fp32"):
        return False
    on_cpu = not config.wants_gpu or not gpu_provider
    return on_cpu and openvino_available()


def query_config(config: EncoderConfig, catalog_runtime: str) -> EncoderConfig:
    """The configuration for photo queries against a catalog whose photos ran as `catalog_runtime` (the
    manifest's "onnx bf16 (OpenVINO CPU)"): with runtime "auto", OpenVINO bf16 when the catalog's photos were
    embedded so, and an uploaded catalog photo gets its stored vector; else `config` unchanged (fp32
    catalogs hold ONNX Runtime's vectors: queries stay on it)."""
    bf16_catalog = "OpenVINO" in catalog_runtime and "bf16" in catalog_runtime.split()
    if config.runtime != "auto" or config.catalog or not bf16_catalog:
        return config
    if not wants_openvino(replace(config, catalog=True), gpu_provider=config.wants_gpu and _gpu_provider(config)):
        return config
    return replace(config, runtime="openvino")


def _gpu_provider(config: EncoderConfig) -> bool:
    from vitrina.encoders.onnx_runtime import execution_providers

    return len(execution_providers(config)) > 1


@dataclass(frozen=True)
class CompiledGraph:
    """A graph compiled by OpenVINO and the precision it computes in ("bf16" or "fp32")."""

    model: Any
    precision: str


def compile_graph(path: Path, config: EncoderConfig) -> CompiledGraph:
    """`path` compiled for the CPU: bf16 with precision "auto" where the CPU computes it natively, else fp32
    (the vectors ONNX Runtime and PyTorch make, cosine >= 0.9999); catalog photos as one stream per core."""
    if config.precision not in ("auto", "fp32"):
        raise EncoderError(f"the OpenVINO runtime runs fp32 image graphs (bf16 where the CPU has it), not "
                           f"{config.precision}; use precision auto or fp32, or the onnxruntime runtime")
    try:
        import openvino as ov
    except ImportError as exc:
        raise EncoderError("the OpenVINO image runtime needs the package openvino: pip install vitrina[openvino]") from exc
    core = ov.Core()
    cache = openvino_cache(config)
    cache.mkdir(parents=True, exist_ok=True)
    core.set_property({"CACHE_DIR": str(cache)})
    native_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precision = "bf16" if config.precision == "auto" and native_bf16 else "fp32"
    threads = config.threads or usable_cores()
    settings = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    if config.catalog and threads > 1:  # bulk: a batch per core at once, one thread each (4-13% less CPU)
        settings.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads})
    try:
        return CompiledGraph(core.compile_model(str(path), "CPU", settings), precision)
    except Exception as exc:  # OpenVINO raises RuntimeError variants
        raise EncoderError(f"OpenVINO could not compile {path}: {exc}") from exc


class OpenVinoImageEncoder(OnnxImageEncoder):
    """An exported image model (fp32 graph) run by OpenVINO on the CPU; preprocessing as OnnxImageEncoder."""

    def __init__(self, model_dir: str | Path, config: EncoderConfig) -> None:
        self.model_dir = Path(model_dir).expanduser()
        self.info = OnnxModelInfo.load(self.model_dir)
        if self.info.modality != "image":
            raise EncoderError(f"{self.model_dir} holds a {self.info.modality} model, not an image model")
        self.config = config
        self.modality = "image"
        compiled = compile_graph(self.model_dir / self.info.files["fp32"], config)
        self.precision = compiled.precision
        self.compiled = compiled.model
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one infer request: callers on several threads take turns
        self.queue: Any = None  # an AsyncInferQueue of one request per stream, made on the first `submit`
        self.providers = ["OpenVINO CPU"]
        self.on_gpu = False

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's embeddings for one batch of pixels."""
        with self.lock:
            return np.array(self.request.infer({0: feeds["pixels"]})[0], dtype=np.float32)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Unit vectors of N x size x size x 3 uint8 pixels; with a stream per core, their batches run at once."""
        if self.streams == 1:
            return super().encode_pixels(pixels)
        step = self.config.batch_size
        with self.lock:
            futures = [self.submit(pixels[start : start + step]) for start in range(0, len(pixels), step)]
            self.wait()
        return np.concatenate([f.result() for f in futures]) if futures else np.zeros((0, self.dim), np.float32)

    def submit(self, pixels: np.ndarray) -> "Future[np.ndarray]":
        """Starts embedding a batch of uint8 pixels on the free streams, STREAM_BATCH photos per request (waits
        for a stream when all are busy); the Future holds their unit vectors. One caller thread at a time."""
        import openvino as ov

        if self.queue is None:
            self.queue = ov.AsyncInferQueue(self.compiled, self.streams)
            self.queue.set_callback(_deliver)
        parts: list[Future[np.ndarray]] = []
        for start in range(0, len(pixels), STREAM_BATCH):
            parts.append(Future())
            self.queue.start_async({0: pixels[start : start + STREAM_BATCH]}, parts[-1])
        return _joined(parts, self.dim)

    def wait(self) -> None:
        """Returns when every submitted batch is done."""
        if self.queue is not None:
            self.queue.wait_all()


def _joined(parts: list["Future[np.ndarray]"], dim: int) -> "Future[np.ndarray]":
    """One Future of the parts' vectors, in order, set when the last part is."""
    joined: Future[np.ndarray] = Future()
    if not parts:
        joined.set_result(np.zeros((0, dim), dtype=np.float32))
        return joined
    left, lock = [len(parts)], threading.Lock()

    def done(_: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            joined.set_result(np.concatenate([part.result() for part in parts]))
        except Exception as exc:  # noqa: BLE001 - a part's failure is the batch's
            joined.set_exception(exc)

    for part in parts:
        part.add_done_callback(done)
    return joined


def _deliver(request: Any, future: "Future[np.ndarray]") -> None:
    try:
        vectors = np.array(request.get_output_tensor(0).data, dtype=np.float32)
        future.set_result(l2_normalize(vectors))
    except Exception as exc:  # noqa: BLE001 - handed to the caller through the Future
        future.set_exception(exc)
