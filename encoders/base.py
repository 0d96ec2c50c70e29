"""The Encoder protocol and the batching machinery shared by the PyTorch encoders."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from encoders.config import EncoderConfig


@runtime_checkable
class Encoder(Protocol):
    """Embeds a batch of inputs (strings or PIL images) as L2-normalised float32 rows."""

    modality: str  # "text" or "image"

    @property
    def name(self) -> str:
        """Stable identity of the model and its weights; an index records it."""
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, batch: Sequence[Any]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def select_device(requested: str | None) -> torch.device:
    """The requested device, or CUDA when present and CPU otherwise."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def file_fingerprint(*paths: Path, extra: str = "") -> str:
    """Short hash of files' sizes, heads and tails: cheap, and changes when weights change."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), 2)
                h.update(f.read())
    return h.hexdigest()[:12]


class TorchEncoder:
    """Base for PyTorch encoders: chunks input into batches and normalises the output.

    Subclasses set `modality`, `_name`, `_dim`, `device` and implement `_embed(items)`.
    """

    modality: str = ""
    _name: str
    _dim: int

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.device = select_device(config.device)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, items: Sequence[Any]) -> torch.Tensor:
        raise NotImplementedError

    def _order(self, batch: Sequence[Any]) -> np.ndarray:
        """Processing order; text encoders sort by length to cut padding."""
        return np.arange(len(batch))

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = self._order(batch)
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                emb = self._embed([batch[i] for i in rows])
                out[rows] = emb.float().cpu().numpy()
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device})"
