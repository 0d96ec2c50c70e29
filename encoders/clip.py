"""CLIP models through open_clip: one model gives an image tower and an aligned text tower."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from vitrina.encoders.base import file_fingerprint
from vitrina.encoders.torch_encoder import TorchEncoder
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError


class OpenClipModel:
    """A loaded open_clip model, shared by its image and text encoders.

    arch: an open_clip architecture name (e.g. ViT-B-32) or a local directory holding
    `open_clip_config.json` and weights. pretrained: a tag (downloaded; online) or a checkpoint path.
    """

    def __init__(self, arch: str, pretrained: str | None, config: EncoderConfig) -> None:
        import open_clip

        self.config = config
        local_dir = Path(arch).expanduser()
        if local_dir.is_dir():
            if not (local_dir / "open_clip_config.json").is_file():
                raise EncoderError(f"{local_dir} has no open_clip_config.json, so it is not an open_clip model")
            model_name, identity = f"local-dir:{local_dir.resolve()}", local_dir.name
            weights = sorted(local_dir.glob("open_clip_*.safetensors")) + sorted(local_dir.glob("open_clip_*.bin"))
            fp = file_fingerprint(local_dir / "open_clip_config.json", *weights)
        else:
            if arch not in open_clip.list_models():
                raise EncoderError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
            model_name, identity = arch, arch
            if pretrained and Path(pretrained).expanduser().is_file():
                pretrained = str(Path(pretrained).expanduser())
                fp = file_fingerprint(Path(pretrained), extra=arch)
            elif pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
                raise EncoderError(f"CLIP checkpoint not found: {pretrained}")
            elif pretrained:
                fp = hashlib.sha256(f"{arch}={pretrained}".encode()).hexdigest()[:12]
            else:
                raise EncoderError(
                    f"clip:{arch} needs weights: clip:{arch}=TAG (online), clip:{arch}=PATH, or clip:DIR"
                )
        if config.offline:
            # Without this, open_clip waits about 46 s on the hub before failing.
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device="cpu"
            )
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors
            raise EncoderError(f"could not load CLIP model {arch!r} (pretrained={pretrained!r}): {exc}") from exc
        self.model.eval()
        self.identity = f"open_clip:{identity}{'=' + Path(pretrained).name if pretrained else ''}@{fp}"
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["probe"])).shape[-1])

    def image_encoder(self) -> "ClipImageEncoder":
        return ClipImageEncoder(self)

    def text_encoder(self) -> "ClipTextEncoder":
        return ClipTextEncoder(self)


class _ClipTower(TorchEncoder):
    def __init__(self, clip: OpenClipModel) -> None:
        super().__init__(clip.config)
        self.clip = clip
        clip.model.to(self.device)
        self._dim = clip.dim
        self._name = clip.identity


class ClipImageEncoder(_ClipTower):
    """CLIP's image tower, with the model's own preprocessing."""

    modality = "image"

    def _embed(self, items: Sequence[Image.Image]) -> torch.Tensor:
        x = torch.stack([self.clip.preprocess(img.convert("RGB")) for img in items]).to(self.device)
        return self.clip.model.encode_image(x)


class ClipTextEncoder(_ClipTower):
    """CLIP's text tower: its vectors live in the same space as ClipImageEncoder's."""

    modality = "text"

    def _embed(self, items: Sequence[str]) -> torch.Tensor:
        return self.clip.model.encode_text(self.clip.tokenizer(list(items)).to(self.device))
