"""The Encoder protocol every backend satisfies, and helpers that need no deep-learning framework."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


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
