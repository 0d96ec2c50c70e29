"""BERT-family text encoders through Hugging Face transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vitrina.encoders.text_identity import local_text_name, read_sentence_transformers_config  # noqa: F401 - public here too
from vitrina.encoders.torch_encoder import TorchEncoder
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError

POOLING_MODES = ("mean", "cls", "max")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors from token states: mean over real tokens, the [CLS] token, or max."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class TransformersTextEncoder(TorchEncoder):
    """A BERT-family model (AutoTokenizer + AutoModel) with the pooling the model expects.

    `source` is a local directory or, when online, a Hugging Face hub name. Pooling comes from a
    sentence-transformers `modules.json` when present, else `pooling` (mean by default).
    """

    modality = "text"

    def __init__(
        self,
        source: str,
        config: EncoderConfig,
        *,
        label: str | None = None,
        pooling: str | None = None,
    ) -> None:
        super().__init__(config)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        local = Path(source).expanduser()
        is_local = local.is_dir()
        if not is_local and (source.startswith((".", "/", "~")) or local.exists()):
            raise EncoderError(f"text model directory not found: {source}")
        try:
            where = str(local) if is_local else source
            self.tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=config.offline or is_local)
            self.model = AutoModel.from_pretrained(where, local_files_only=config.offline or is_local)
        except (OSError, ValueError) as exc:
            hint = "" if is_local else " (a hub name needs internet, or pass a local model directory)"
            raise EncoderError(f"could not load text model {source!r}{hint}: {exc}") from exc
        self.model.eval().to(self.device)

        st_pooling, st_max_len = read_sentence_transformers_config(local) if is_local else (None, None)
        self.pooling = pooling or st_pooling or "mean"
        if self.pooling not in POOLING_MODES:
            raise EncoderError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLING_MODES)}")
        model_max = getattr(self.model.config, "max_position_embeddings", 512)
        self.max_length = min(config.max_text_length or st_max_len or 512, model_max)
        self._dim = int(self.model.config.hidden_size)

        if is_local:
            self._name = local_text_name(local, label, self.pooling)
        else:  # a hub model: its commit identifies the weights
            fp = f"{getattr(self.model.config, '_commit_hash', None) or 'hub'}"[:12]
            self._name = f"transformers:{label or source}@{fp}"

    def _order(self, batch: Sequence[str]) -> np.ndarray:
        return np.argsort([-len(t) for t in batch], kind="stable")

    def embed_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled, unnormalised vectors as a tensor that keeps its autograd graph (for fine-tuning)."""
        return self._embed(texts)

    def _embed(self, items: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**tokens).last_hidden_state
        return pool(hidden, tokens["attention_mask"], self.pooling)
