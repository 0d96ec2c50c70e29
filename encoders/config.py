"""Settings shared by every encoder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vitrina.encoders.colour import ColourConfig

BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "int8", "fp16")
RUNTIMES = ("auto", "onnxruntime", "openvino")


@dataclass(frozen=True)
class EncoderConfig:
    """How encoders run: backend, device, batch size, and whether hubs may be contacted.

    backend: "onnx" (ONNX Runtime over models exported by Vitrina) or "torch" (PyTorch eager/TorchScript).
    device: "cuda", "cpu" or None to pick CUDA when present.
    precision: ONNX weights to run. "auto": fp16 on a GPU; on the CPU fp32, except int8 for text queries.
    catalog: this encoder embeds catalog products (stored in the index), not queries; with precision
        "auto" on the CPU, text then runs in fp32, so stored vectors match PyTorch's (see choose_precision).
    runtime: what runs ONNX graphs on the CPU. "onnxruntime"; "openvino" (the optional openvino extra; fp32
        graphs, in bf16 with precision "auto" where the CPU has bfloat16 arithmetic); "auto": OpenVINO bf16 for
        catalog text and catalog photos with precision "auto" when openvino is installed and the CPU has bf16
        (photos: fp32 on OpenVINO without bf16 or with precision "fp32"; photo queries follow a bf16 catalog,
        encoders.openvino_image.query_config), else onnxruntime.
    threads: CPU threads per ONNX session (None: every core this process may use).
    spin: ONNX Runtime's idle threads spin for work (fastest alone; a server turns it off so idle
        threads leave the cores to the requests in flight).
    offline: never contact a model hub; hub names must already be in the local cache.
    """

    backend: str = "onnx"
    device: str | None = None
    batch_size: int = 32
    precision: str = "auto"
    runtime: str = "auto"
    threads: int | None = None
    spin: bool = True
    offline: bool = False
    max_text_length: int | None = None
    image_timeout_s: float = 10.0
    image_max_pixels: int = 40_000_000
    image_max_aspect: float = 20.0  # longer side / shorter side of a catalog image; beyond it the image is refused
    catalog: bool = False
    onnx_cache: Path | None = None  # where exports are cached between runs (None: ~/.cache/vitrina/onnx)
    optimised_cache: bool = True  # keep each graph's optimised form in onnx_cache (encoders.onnx_optimised)
    prepack: bool = True  # ONNX Runtime pre-packs weights at session start: faster runs, a slower start (a
    # one-query process turns it off: -12 ms of session, +1 ms of its one run)
    colour: ColourConfig | None = ColourConfig()  # the colour descriptor stored per catalog photo; None: none stored

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.image_max_aspect < 1:
            raise ValueError(f"image_max_aspect must be at least 1, got {self.image_max_aspect}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def for_catalog(self) -> "EncoderConfig":
        """This configuration for embedding catalog products rather than queries."""
        return replace(self, catalog=True)

    @property
    def wants_gpu(self) -> bool:
        """True unless the CPU was asked for; whether a GPU exists is for each backend to find out."""
        return self.device is None or self.device.startswith("cuda")
