"""Contrastive fine-tuning of a BERT-family text encoder on (query, relevant product text) pairs.

The loss is the multiple-negatives ranking loss of sentence-transformers: each query in a batch
must score its own positive above every other product text in the batch (in-batch negatives) and
above its hard negatives (products a retriever ranks high that the shop did not judge relevant).
Each query appears once per batch, so a query's other positives never serve as its negatives.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from vitrina.encoders.errors import EncoderError
from vitrina.encoders.text import TransformersTextEncoder

TRAINING_FILE = "vitrina_training.json"


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup: float = 0.1  # share of steps with a linear learning-rate ramp
    scale: float = 20.0  # cosine similarities are multiplied by this before the softmax
    seed: int = 0


@dataclass(frozen=True)
class TrainingExample:
    """One query with its relevant product texts and, optionally, hard negative product texts."""

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()


@dataclass
class TrainingReport:
    epochs: list[float] = field(default_factory=list)  # mean loss per epoch
    steps: int = 0
    seconds: float = 0.0


def _batches(examples: Sequence[TrainingExample], config: TrainingConfig, rng: random.Random):
    order = list(range(len(examples)))
    rng.shuffle(order)
    for start in range(0, len(order), config.batch_size):
        chosen = [examples[i] for i in order[start : start + config.batch_size]]
        if len(chosen) < 2:
            continue  # one query has no in-batch negatives to learn from
        queries = [e.query for e in chosen]
        positives = [rng.choice(e.positives) for e in chosen]
        negatives = [rng.choice(e.negatives) for e in chosen if e.negatives]
        yield queries, positives, negatives


def finetune_text_encoder(
    encoder: TransformersTextEncoder,
    examples: Sequence[TrainingExample],
    config: TrainingConfig = TrainingConfig(),
    progress: bool = True,
) -> TrainingReport:
    """Train `encoder`'s model in place; it is back in eval mode, ready to encode, when this returns."""
    examples = [e for e in examples if e.positives]
    if len(examples) < 2:
        raise EncoderError("fine-tuning needs at least 2 queries with a relevant product")
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    model = encoder.model
    steps_per_epoch = max(1, math.ceil(len(examples) / config.batch_size))
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(total * config.warmup))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    report = TrainingReport()
    started = time.perf_counter()
    model.train()
    try:
        with tqdm(total=total, desc="fine-tuning", unit="step", disable=not progress, leave=False) as bar:
            for _ in range(config.epochs):
                losses = []
                for queries, positives, negatives in _batches(examples, config, rng):
                    q = torch.nn.functional.normalize(encoder.embed_tensor(queries), dim=-1)
                    d = torch.nn.functional.normalize(encoder.embed_tensor(positives + negatives), dim=-1)
                    logits = config.scale * q @ d.T
                    loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(queries), device=logits.device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
                    report.steps += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
                report.epochs.append(sum(losses) / max(1, len(losses)))
    finally:
        model.eval()
    report.seconds = time.perf_counter() - started
    return report


def check_model_out(out: str | Path) -> Path:
    """Refuse to write a model over a directory that is not a Vitrina-trained model."""
    out = Path(out)
    if out.exists() and not (out / TRAINING_FILE).is_file():
        raise EncoderError(f"{out} exists and is not a Vitrina-trained model; refusing to replace it")
    return out


def save_text_model(encoder: TransformersTextEncoder, out: Path, training: dict) -> None:
    """Write a loadable model directory (weights, tokenizer, pooling, `training` record) at `out`.

    Written to a temp directory and renamed, so a failure leaves no half-written model behind.
    """
    out = check_model_out(out)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        encoder.model.save_pretrained(tmp)
        encoder.tokenizer.save_pretrained(tmp)
        pooling = {f"pooling_mode_{m}_tokens" if m != "cls" else "pooling_mode_cls_token": encoder.pooling == m
                   for m in ("mean", "max", "cls")}
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": encoder.dim, **pooling}))
        (tmp / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))
        (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": encoder.max_length}))
        (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=2, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_training_record(model_dir: str | Path) -> dict | None:
    """The training record of a Vitrina-trained model directory, or None for any other model."""
    path = Path(model_dir) / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else None

