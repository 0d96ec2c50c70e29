"""Exported image graphs on OpenVINO's CPU runtime: the fast path for embedding catalog photos.

The same `model.onnx` that ONNX Runtime runs (uint8 pixels in, unit vector out) is compiled by OpenVINO.
Runtime "auto" (catalog photos) computes in fp32: the same vectors (EfficientNet-Lite0 1.5x ONNX Runtime's
speed per image). Runtime "openvino" with precision "auto" computes in bf16 on a CPU that has it natively
(AVX512-BF16, AMX): 2.6x ONNX Runtime, cosine to fp32 0.9995, image-lookup precision@10 unchanged; but a
photo no longer scores exactly 1.0 against its own stored vector (benchmarks/RESULTS.md, issue 19). Compiled
graphs are cached on disk (the ONNX cache's `openvino` folder), so a new process compiles in about 0.2 s.
Chosen by `EncoderConfig.runtime` (shared with the text encoders, whose rule lives in
`encoders.onnx_runtime.openvino_precision`; `wants_openvino` is the rule for images).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.onnx_runtime import OnnxImageEncoder, OnnxModelInfo, default_cache_dir, usable_cores

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    """Whether the optional `openvino` package can be imported (vitrina[openvino])."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def wants_openvino(config: EncoderConfig, gpu_provider: bool) -> bool:
    """Whether an exported image graph runs on OpenVINO: asked for, or "auto" for catalog photos on a CPU
    with OpenVINO installed and precision auto or fp32 (queries stay on ONNX Runtime)."""
    if config.runtime == "openvino":
        return True
    if config.runtime != "auto" or not config.catalog or config.precision not in ("auto", "fp32"):
        return False
    on_cpu = not config.wants_gpu or not gpu_provider
    return on_cpu and openvino_available()


@dataclass(frozen=True)
class CompiledGraph:
    """A graph compiled by OpenVINO and the precision it computes in ("bf16" or "fp32")."""

    model: Any
    precision: str


def compile_graph(path: Path, config: EncoderConfig) -> CompiledGraph:
    """`path` compiled for the CPU: fp32 (runtime "auto": the vectors ONNX Runtime and PyTorch make, cosine
    >= 0.9999), bf16 with runtime "openvino" and precision "auto" where the CPU computes it natively."""
    if config.precision not in ("auto", "fp32"):
        raise EncoderError(f"the OpenVINO runtime runs fp32 image graphs (bf16 where the CPU has it), not "
                           f"{config.precision}; use precision auto or fp32, or the onnxruntime runtime")
    try:
        import openvino as ov
    except ImportError as exc:
        raise EncoderError("the OpenVINO image runtime needs the package openvino: pip install vitrina[openvino]") from exc
    core = ov.Core()
    cache = (config.onnx_cache or default_cache_dir()) / "openvino"
    cache.mkdir(parents=True, exist_ok=True)
    core.set_property({"CACHE_DIR": str(cache)})
    native_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precision = "bf16" if config.runtime == "openvino" and config.precision == "auto" and native_bf16 else "fp32"
    settings = {"INFERENCE_NUM_THREADS": config.threads or usable_cores(), "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
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
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one infer request: callers on several threads take turns
        self.providers = ["OpenVINO CPU"]
        self.on_gpu = False

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's embeddings for one batch of pixels."""
        with self.lock:
            return np.array(self.request.infer({0: feeds["pixels"]})[0], dtype=np.float32)
