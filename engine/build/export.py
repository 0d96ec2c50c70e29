"""`vitrina export-onnx`: write a catalog's encoders as ONNX model directories, checked against PyTorch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from vitrina.encoders import Encoder, EncoderConfig, EncoderError, load_image_encoder, load_text_encoder
from vitrina.encoders.factory import is_clip_spec, load_image_space_text_encoder
from vitrina.encoders.onnx_export import export_encoder
from vitrina.encoders.onnx_runtime import load_onnx_encoder

CHECK_TEXTS = ["waterproof hiking boots for women", "Stainless steel 36 in. range hood", "a"]
MIN_CHECK_COSINE = {"fp32": 0.9999, "int8": 0.95, "fp16": 0.99}


def check_images(size: int = 256) -> list[Image.Image]:
    """Deterministic non-square test images (exercise padding and cropping)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 40 * i, 3), dtype=np.uint8)) for i in range(3)]


def verify_export(torch_encoder: Encoder, model_dir: Path, precisions: Sequence[str]) -> dict[str, float]:
    """Lowest cosine between PyTorch and each exported graph on sample inputs; raises when one is off."""
    inputs: list[Any] = CHECK_TEXTS if torch_encoder.modality == "text" else check_images()
    reference = torch_encoder.encode(inputs)
    result = {}
    for precision in precisions:
        onnx = load_onnx_encoder(model_dir, EncoderConfig(device="cpu", precision=precision))
        cosine = float((onnx.encode(inputs) * reference).sum(axis=1).min())
        if cosine < MIN_CHECK_COSINE[precision]:
            raise EncoderError(f"the {precision} export of {torch_encoder.name} disagrees with PyTorch (cosine {cosine:.4f}); "
                               "this model is not exportable as is")
        result[precision] = round(cosine, 6)
    return result


def export_models(
    out: str | Path, text_spec: str | None, image_spec: str | None, precisions: Sequence[str], config: EncoderConfig
) -> list[dict[str, Any]]:
    """Export the named encoders under `out` (text/, image/, and image-text/ for a CLIP image model)."""
    torch_config = replace(config, backend="torch")
    out = Path(out)
    jobs: list[tuple[str, str, Encoder]] = []
    if text_spec:
        jobs.append(("text", text_spec, load_text_encoder(text_spec, torch_config)))
    if image_spec:
        jobs.append(("image", image_spec, load_image_encoder(image_spec, torch_config)))
        if is_clip_spec(image_spec):
            jobs.append(("image-text", image_spec, load_image_space_text_encoder(image_spec, torch_config)))
    done = []
    for role, spec, encoder in jobs:
        wanted = [p for p in precisions if p != "int8" or encoder.modality == "text"]
        info = export_encoder(encoder, out / role, wanted, spec)
        checked = verify_export(encoder, out / role, wanted)
        done.append({"role": role, "dir": str((out / role).resolve()), "encoder": info.encoder, "dim": info.dim,
                     "files": info.files, "check_cosine": checked})
    return done
