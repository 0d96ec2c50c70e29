"""Issue 18: what a LiT-style tuned text tower would cost on this machine (timing only, no quality).

Tunes the packaged MiniLM (all layers, mean pooling) plus a linear head against LOCKED image
features (frozen EfficientNet-Lite0 vectors cached by shared_space_ideas.py, through a fixed linear
head) with in-batch InfoNCE, for one epoch over a subsample of the training products, and
extrapolates the seconds per product to 10,000 products.

    (cd benchmarks && ../.venv/bin/python lit_timing.py --products 1024)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from shared_space_ideas import CACHE, HELDOUT, VALIDATION
from vitrina.encoders.factory import packaged_minilm_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer

    titles = pd.read_csv("/work/shared/data/fashion/products.csv", dtype=str)["title"].fillna("").tolist()
    image = torch.from_numpy(np.load(CACHE / "image.npy"))
    bucket = np.load(CACHE / "bucket.npy")
    rows = np.flatnonzero(bucket >= HELDOUT + VALIDATION)[: args.products]
    path = packaged_minilm_dir()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    text_head = torch.nn.Linear(model.config.hidden_size, 256)
    image_head = torch.nn.Linear(image.shape[1], 256).requires_grad_(False)  # locked
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
    opt = torch.optim.AdamW([*model.parameters(), *text_head.parameters(), scale], lr=2e-5)
    model.train()
    started = time.perf_counter()
    steps = 0
    for start in range(0, len(rows), args.batch_size):
        idx = rows[start : start + args.batch_size]
        batch = tokenizer([titles[i] for i in idx], padding=True, truncation=True, max_length=32, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        t = F.normalize(text_head((hidden * mask).sum(1) / mask.sum(1)), dim=-1)
        v = F.normalize(image_head(image[torch.from_numpy(idx)]), dim=-1)
        logits = scale.exp() * t @ v.T
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    seconds = time.perf_counter() - started
    per_product = seconds / len(rows)
    print(json.dumps({"products": len(rows), "batch_size": args.batch_size, "threads": args.threads, "steps": steps,
                      "epoch_seconds": round(seconds, 1), "ms_per_product": round(1000 * per_product, 2),
                      "epoch_seconds_10k_extrapolated": round(10_000 * per_product), "note": "machine shared; see load"}))


if __name__ == "__main__":
    main()
