"""Shared fixtures: tiny random-initialised models built in the test, small catalogs, and a CLI runner."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from vitrina.cli.main import main as cli_main

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "engine" / "demo_data"
SHARED = REPO.parent / "shared" / "data"

WORDS = (
    "red blue black white green shirt shoes boots dress watch wallet leather running women men kids "
    "summer winter waterproof hiking bag cotton denim jeans steel strap sports casual"
).split()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a small word-piece vocabulary, random weights."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + WORDS
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_resnet_weights(tmp_path_factory) -> Path:
    """A resnet18 state dict with random weights (the real architecture, untrained)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A local open_clip directory: a 1-layer ViT and text transformer, 32-d, random weights."""
    import torch
    from open_clip.model import CLIP

    out = tmp_path_factory.mktemp("tiny-clip")
    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    torch.save(CLIP(**model_cfg).state_dict(), out / "open_clip_pytorch_model.bin")
    return out


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0].keys())
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def demo_rows() -> list[dict]:
    with (DEMO_DATA / "products.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def demo_catalog(dest: Path, rows: list[dict]) -> Path:
    """A catalog of demo `rows` at dest/products.csv, with their images copied beside it."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(DEMO_DATA / r["image"], dest / r["image"])
    return write_csv(dest / "products.csv", rows)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `vitrina ARGS` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
