"""TorchEncoder: the batching machinery shared by the PyTorch encoders."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from vitrina.encoders.base import l2_normalize
from vitrina.encoders.config import EncoderConfig


def select_device(requested: str | None) -> torch.device:
    """The requested device, or CUDA when present and CPU otherwise."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")



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
