"""Issue 18: LiT-style tuning of the MiniLM text tower against locked image features, held-out quality.

The image side stays frozen (EfficientNet-Lite0 vectors joined with the colour descriptor at scale
1.0, as the `colour-v1` idea) through a trainable linear head; the whole MiniLM (mean pooling) and a
linear text head learn by in-batch InfoNCE on the training products. The epoch is chosen by the
validation split's recall@10; the held-out products are scored once at the end (split as in
shared_space_ideas.py).

    (cd benchmarks && ../.venv/bin/python lit_quality.py --epochs 3)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from shared_space_ideas import CACHE, HELDOUT, VALIDATION
from vitrina.encoders.factory import packaged_minilm_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--warm-start", action="store_true",
                        help="start from the linear heads trained on frozen vectors (idea colour-v1), titles normalised like the stored vectors")
    parser.add_argument("--colour-file", default="colour-v1.npy",
                        help="cached descriptors under out/shared-ideas (colour-v1.npy: HSV; colour-lab.npy: the engine's CIELAB)")
    parser.add_argument("--colour", type=float, default=1.0, help="scale of the descriptor x the mean CNN norm")
    parser.add_argument("--freeze-layers", type=int, default=0, help="keep the embeddings and the first N layers frozen")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    from transformers import AutoModel, AutoTokenizer

    titles = pd.read_csv("/work/shared/data/fashion/products.csv", dtype=str)["title"].fillna("").tolist()
    cnn = np.load(CACHE / "image.npy")
    colour = args.colour * float(np.linalg.norm(cnn, axis=1).mean()) * np.load(CACHE / args.colour_file)
    image = torch.from_numpy(np.hstack([cnn, colour]).astype(np.float32))
    bucket = np.load(CACHE / "bucket.npy")
    test_rows = np.flatnonzero(bucket < HELDOUT)
    val_rows = np.flatnonzero((bucket >= HELDOUT) & (bucket < HELDOUT + VALIDATION))
    train_rows = np.flatnonzero(bucket >= HELDOUT + VALIDATION)
    path = packaged_minilm_dir()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    if args.freeze_layers:
        frozen = [model.embeddings, *model.encoder.layer[: args.freeze_layers]]
        for part in frozen:
            part.requires_grad_(False)
    text_head = torch.nn.Linear(model.config.hidden_size, 256)
    image_head = torch.nn.Linear(image.shape[1], 256)
    if args.warm_start:
        from dataclasses import replace

        from shared_space_ideas import IDEAS, cached_vectors, run

        heads: list = []
        idea = replace(IDEAS["colour-v1"], colour=args.colour, colour_file=args.colour_file)
        print(json.dumps(run(idea, cached_vectors(Path("out/quality-fashion-image")), heads)), flush=True)
        text_head.load_state_dict(heads[0].linear.state_dict()), image_head.load_state_dict(heads[1].linear.state_dict())
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
    opt = torch.optim.AdamW([{"params": [q for q in model.parameters() if q.requires_grad], "lr": args.lr},
                             {"params": [*text_head.parameters(), *image_head.parameters(), scale], "lr": args.head_lr}],
                            weight_decay=0.01)

    def encode(rows: np.ndarray) -> torch.Tensor:
        batch = tokenizer([titles[i] for i in rows], padding=True, truncation=True, max_length=32, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return F.normalize(text_head(F.normalize(pooled, dim=-1) if args.warm_start else pooled), dim=-1)

    def recall(rows: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            gallery = F.normalize(image_head(image), dim=-1)
            q = torch.cat([encode(rows[i : i + 256]) for i in range(0, len(rows), 256)])
            scores = q @ gallery.T
            own = scores[torch.arange(len(rows)), torch.from_numpy(rows)]
            value = float(((scores > own[:, None]).sum(1) < 10).float().mean())
        model.train()
        return value

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    best = (-1.0, 0, None)
    if args.warm_start:
        print(json.dumps({"epoch": 0, "validation_r10": round(recall(val_rows), 4)}), flush=True)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(train_rows)
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            t, v = encode(idx), F.normalize(image_head(image[torch.from_numpy(idx)]), dim=-1)
            logits = scale.exp().clamp(max=100.0) * t @ v.T
            labels = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = recall(val_rows)
        print(json.dumps({"epoch": epoch, "validation_r10": round(score, 4), "seconds": round(time.perf_counter() - started, 1)}),
              flush=True)
        if score > best[0]:
            best = (score, epoch, ({k: v.clone() for k, v in model.state_dict().items()},
                                   {k: v.clone() for k, v in text_head.state_dict().items()},
                                   {k: v.clone() for k, v in image_head.state_dict().items()}))
    model.load_state_dict(best[2][0]), text_head.load_state_dict(best[2][1]), image_head.load_state_dict(best[2][2])
    print(json.dumps({"idea": "LiT MiniLM + colour", "validation_r10": round(best[0], 4), "best_epoch": best[1],
                      "test_r10": round(recall(test_rows), 4), "seconds": round(time.perf_counter() - started, 1),
                      "settings": vars(args)}))


if __name__ == "__main__":
    main()
