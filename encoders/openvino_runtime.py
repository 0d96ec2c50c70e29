"""OpenVINO as the CPU runtime of exported ONNX graphs (optional: `pip install vitrina[openvino]`).

OpenVINO reads the same `model.onnx` as ONNX Runtime. On CPUs with bfloat16 arithmetic (AVX-512 BF16, AMX)
it runs the fp32 graph in bf16 with fp32 accumulation: on all-MiniLM-L6-v2 that keeps cosine 0.99998 to
fp32 (int8: 0.9989) and embeds catalog text about 1.7x faster than ONNX Runtime fp32 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from vitrina.encoders.errors import EncoderError

PROVIDER = "OpenVINO (CPU)"
# Batches queued per stream in `run_all`: with one, a stream that finished waited for Python to hand it the next;
# with two the next is already queued (10,000 titles embedded 0.15-0.2 s sooner, 3%; a third gains nothing)
REQUESTS_PER_STREAM = 2


def openvino_installed() -> bool:
    """Whether the optional `openvino` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


@lru_cache(maxsize=1)
def _core() -> Any:
    import openvino as ov

    return ov.Core()


def cpu_has_bf16() -> bool:
    """Whether OpenVINO finds bfloat16 arithmetic on this CPU (False without OpenVINO)."""
    if not openvino_installed():
        return False
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - a broken install or an unknown device means no bf16 here
        return False


class _Input:
    def __init__(self, name: str) -> None:
        self.name = name


class OpenVinoSession:
    """An ONNX graph compiled by OpenVINO for the CPU, behind the part of onnxruntime's session API encoders use."""

    def __init__(self, path: Path, threads: int, bf16: bool, streams: int = 1, cache_dir: Path | None = None) -> None:
        """streams > 1: that many batches run at once, one thread each (`run_all`; bulk encoding).
        cache_dir: where OpenVINO keeps the compiled graph, so a later process loads it instead of compiling."""
        if not openvino_installed():
            raise EncoderError("the OpenVINO runtime was asked for, but openvino is not installed; pip install vitrina[openvino]")
        try:
            core = _core()
            settings = {
                "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                "INFERENCE_NUM_THREADS": int(threads),
                "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
                **({"NUM_STREAMS": int(streams)} if streams > 1 else {}),
            }
            if cache_dir is not None:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                settings["CACHE_DIR"] = str(cache_dir)
            self.compiled = core.compile_model(str(path), "CPU", settings)  # from the path: a cached blob skips reading it
            self.streams = int(self.compiled.get_property("NUM_STREAMS")) if streams > 1 else 1
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise EncoderError(f"OpenVINO could not load {path}: {exc}") from exc
        self.request = self.compiled.create_infer_request()
        self.queue: Any = None  # an AsyncInferQueue of REQUESTS_PER_STREAM requests a stream, made on the first run_all
        self.output = self.compiled.output(0)
        self.inputs = [_Input(port.any_name) for port in self.compiled.inputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.array(self.request.infer(feeds)[self.output], dtype=np.float32)]

    def run_all(self, feeds: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The embeddings of every batch of feeds, in order, `streams` batches at a time (and as many queued)."""
        if self.streams == 1:
            return [self.run(None, f)[0] for f in feeds]
        import openvino as ov

        if self.queue is None:
            self.queue = ov.AsyncInferQueue(self.compiled, self.streams * REQUESTS_PER_STREAM)
        results: dict[int, np.ndarray] = {}

        def done(request: Any, n: int) -> None:
            results[n] = np.array(request.get_output_tensor(0).data, dtype=np.float32)

        self.queue.set_callback(done)
        count = 0
        for count, f in enumerate(feeds, 1):
            self.queue.start_async(f, count - 1)
        self.queue.wait_all()
        return [results[n] for n in range(count)]

    def get_inputs(self) -> list[_Input]:
        return self.inputs

    def get_providers(self) -> list[str]:
        return [PROVIDER]

    def get_provider_options(self) -> dict[str, dict]:
        return {}
