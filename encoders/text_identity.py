"""The identity of a local BERT-family text model, read from its files without importing PyTorch.

`TransformersTextEncoder` names itself with `local_text_name`; the factory uses the same name to find the
model's export in the ONNX cache, so indexing with a cached export never loads PyTorch or transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitrina.encoders.base import file_fingerprint
from vitrina.encoders.errors import EncoderError

_SUPPORTED_ST_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


def read_sentence_transformers_config(model_dir: Path) -> tuple[str | None, int | None]:
    """Pooling mode and max sequence length declared by a sentence-transformers layout, if any."""
    pooling, max_len = None, None
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = module.get("type", "")
            if kind not in _SUPPORTED_ST_MODULES:
                raise EncoderError(
                    f"{model_dir}: sentence-transformers module {kind!r} is not supported "
                    f"(Vitrina runs Transformer, Pooling and Normalize modules)"
                )
            if kind.endswith("Pooling"):
                cfg = json.loads((model_dir / module["path"] / "config.json").read_text())
                if cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    pooling = "max"
                elif cfg.get("pooling_mode_mean_tokens"):
                    pooling = "mean"
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = json.loads(st_config.read_text()).get("max_seq_length")
    return pooling, max_len


def local_text_name(model_dir: Path, label: str | None, pooling: str) -> str:
    """The encoder name of a local transformers model directory: its label and a fingerprint of its weights."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    fp = file_fingerprint(model_dir / "config.json", *weights, extra=pooling)
    return f"transformers:{label or model_dir.name}@{fp}"
