"""Neighbour captions: a photo described by the titles of the catalog photos it looks like.

No pretrained text-image model is available offline, so the shared space is learned from the catalog.
Beside a photo's CNN vector (and colour descriptor), the image head also reads its *neighbour caption*:
the softmax-weighted mean of the raw text vectors of the `neighbours` anchor products whose photos look
most like it (cosine of CNN vectors). Anchors are the products the heads are trained on (a sample when there
are many), and a product is never its own neighbour, so the heads learn from captions made exactly as for a
new product's photo or an upload. ASIF (Norelli et al., 2023) showed frozen unimodal encoders can be
related through such anchor pairs; here the relation is an input of the learned head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from vitrina.encoders.base import l2_normalize
from vitrina.engine.errors import QueryError

CAPTIONS_FILE = "captions.npz"
CAPTIONS_STATE = "captions.json"
BATCH = 2048  # photos per similarity block: bounds memory at BATCH x anchors floats


@dataclass
class NeighbourCaptions:
    """Anchor products (their photos' CNN vectors and their text vectors) and how a caption is made from them."""

    ids: list[str]  # anchor product ids
    images: np.ndarray  # (m, image dim) unit-length CNN vectors of the anchors' photos (a product's mean), float16
    texts: np.ndarray  # (m, text dim) unit-length raw text vectors of the anchors, float16
    neighbours: int = 20
    temperature: float = 0.02
    factor: float = 1.0  # the caption's scale in the image head's input (x the mean CNN norm, like colour)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.images) or len(self.ids) != len(self.texts) or not len(self.ids):
            raise QueryError("neighbour captions need one image and one text vector per anchor product")
        self._position = {product_id: i for i, product_id in enumerate(self.ids)}

    @cached_property
    def _images32(self) -> np.ndarray:
        """The anchors' image vectors as float32, made on first use: opening a trained index for text search never
        pays the cast (0.1 s for 5,600 anchors)."""
        return np.asarray(self.images, dtype=np.float32)

    @cached_property
    def _texts32(self) -> np.ndarray:
        return np.asarray(self.texts, dtype=np.float32)

    @property
    def text_dim(self) -> int:
        return int(self.texts.shape[1])

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha1(f"{self.neighbours}|{self.temperature!r}|{self.factor!r}".encode())
        digest.update("\n".join(self.ids).encode())
        return digest.hexdigest()[:12]

    def describe(self, cnn: np.ndarray, product_ids: Sequence[str] | None = None) -> np.ndarray:
        """(n, text dim) unit-length captions of photos with CNN vectors `cnn`; a photo of an anchor product
        (`product_ids`, one per photo) never draws on that product's own text."""
        cnn = np.asarray(cnn, dtype=np.float32)
        if cnn.ndim != 2 or cnn.shape[1] != self.images.shape[1]:
            raise QueryError(f"neighbour captions take {self.images.shape[1]}-d image vectors, got shape {cnn.shape}")
        k = min(self.neighbours, len(self.ids) - 1 if product_ids is not None else len(self.ids))
        out = np.zeros((len(cnn), self.text_dim), dtype=np.float32)
        if k < 1:
            return out
        for start in range(0, len(cnn), BATCH):
            block = l2_normalize(cnn[start : start + BATCH]) @ self._images32.T
            if product_ids is not None:
                own = [(i, self._position.get(str(p), -1)) for i, p in enumerate(product_ids[start : start + BATCH])]
                mine = np.array([(i, j) for i, j in own if j >= 0], dtype=np.int64).reshape(-1, 2)
                block[mine[:, 0], mine[:, 1]] = -np.inf
            nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
            sims = np.take_along_axis(block, nearest, axis=1)
            weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / self.temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            out[start : start + BATCH] = np.einsum("nk,nkd->nd", weights, self._texts32[nearest])
        return l2_normalize(out)

    def join(self, inputs: np.ndarray, cnn: np.ndarray, product_ids: Sequence[str] | None = None) -> np.ndarray:
        """The image head's inputs `inputs` with each photo's scaled caption appended."""
        captions = self.describe(cnn, product_ids)
        return np.hstack([np.asarray(inputs, np.float32), self.factor * captions]).astype(np.float32)

    def save(self, directory: Path) -> None:
        np.savez(directory / CAPTIONS_FILE, ids=np.asarray(self.ids, dtype=str),
                 images=self.images.astype(np.float16), texts=self.texts.astype(np.float16))
        state = {"neighbours": self.neighbours, "temperature": self.temperature, "factor": self.factor,
                 "anchors": len(self.ids), "fingerprint": self.fingerprint}
        (directory / CAPTIONS_STATE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "NeighbourCaptions | None":
        """The captions saved beside heads in `directory`; None when the heads were trained without them."""
        if not (directory / CAPTIONS_STATE).is_file():
            return None
        try:
            state = json.loads((directory / CAPTIONS_STATE).read_text())
            with np.load(directory / CAPTIONS_FILE, allow_pickle=False) as arrays:
                captions = cls([str(i) for i in arrays["ids"]], arrays["images"], arrays["texts"],
                               int(state["neighbours"]), float(state["temperature"]), float(state["factor"]))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise QueryError(f"the neighbour captions in {directory} are damaged ({exc}); run `vitrina train` again") from None
        if state.get("fingerprint") not in (None, captions.fingerprint):
            raise QueryError(f"the neighbour captions in {directory} do not match their record; run `vitrina train` again")
        return captions


def anchor_captions(ids: Sequence[str], cnn: np.ndarray, texts: np.ndarray, anchors: np.ndarray, *,
                    scale: float, neighbours: int, temperature: float, max_anchors: int,
                    seed: int = 0) -> NeighbourCaptions | None:
    """Captions anchored on the products at positions `anchors` (at most `max_anchors`, a seeded sample) of
    `ids` / `cnn` (their image vectors) / `texts` (their raw text vectors); None when `scale` is 0 or fewer than
    two anchors have both."""
    anchors = np.asarray(anchors, dtype=np.int64)
    if scale <= 0 or len(anchors) < 2:
        return None
    if len(anchors) > max_anchors:
        anchors = np.sort(np.random.default_rng(seed).choice(anchors, max_anchors, replace=False))
    cnn = np.asarray(cnn, dtype=np.float32)
    factor = scale * float(np.linalg.norm(cnn[anchors], axis=1).mean())
    images = l2_normalize(cnn[anchors]).astype(np.float16)  # as saved: the heads train on what is loaded later
    texts = l2_normalize(np.asarray(texts, np.float32)[anchors]).astype(np.float16)
    return NeighbourCaptions([str(ids[i]) for i in anchors], images, texts, neighbours, temperature, factor)
