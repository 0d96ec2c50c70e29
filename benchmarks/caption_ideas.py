"""Issue 18, shared space: neighbour-caption variants on frozen vectors, before they went into `vitrina train`.

Reads a fashion index that `vitrina train --heldout 0.2` has trained (text, image, colour and shared-image
spaces), caches its vectors (out/caption-ideas/cache.npz), then trains plain linear heads (symmetric InfoNCE,
AdamW 1e-3, 15 epochs, batch 256; no geometry term, unlike the engine) on image inputs
[CNN, colour descriptor, scale x neighbour caption] and prints held-out text -> image recall@10.

Split (`heldout_bucket`, as `vitrina train --heldout 0.2`): test = bucket < 0.2 (1,618 products; nothing is
chosen on them), validation = [0.2, 0.3) (picks the epoch and the variant), anchors and training = the rest.
A caption is the softmax-weighted (temperature TAU) mean of the raw text vectors of the K training products
whose CNN vectors are nearest (cosine), never the product itself. "+nbr L" adds L x the raw query-text cosine
with the caption at search time (not shipped).

    (cd benchmarks && PYTHONPATH=.. ../.venv/bin/python caption_ideas.py --index TRAINED_FASHION_INDEX \\
        --scale 2 --k 20 --tau 0.02 --schedule cosine [--text-side] [--round2] [--seed 0] [--dim 256])
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchutil import DEFAULT_OUT
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.evaluate.evaluation import product_texts
from vitrina.engine.query.search import SearchSession

CACHE = DEFAULT_OUT / "caption-ideas" / "cache.npz"


def cached(index: Path) -> dict[str, np.ndarray]:
    """Raw text (T), CNN (I), colour (C) vectors per product, query vectors (Q: raw text as queries) and buckets."""
    if CACHE.is_file():
        return dict(np.load(CACHE))
    session = SearchSession(index, VitrinaConfig(progress=False))
    n, spaces = len(session.products), session.directory.spaces

    def full(name: str) -> np.ndarray:
        space = spaces[name]
        out = np.zeros((n, space.vectors.shape[1]), np.float32)
        out[np.asarray(space.rows)] = space.vectors
        return out

    texts = product_texts(session)
    arrays = {"T": full("text"), "I": full("image"), "C": full("colour"),
              "Q": session.encode_queries(texts, "text").astype(np.float32),
              "b": np.array([heldout_bucket(p) for p in session.products.ids])}
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **arrays)
    return arrays


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def recall_at_10(scores: np.ndarray, rows: np.ndarray) -> float:
    own = scores[np.arange(len(rows)), rows]
    return float(((scores > own[:, None]).sum(1) < 10).mean())


def soft_neighbours(sims: np.ndarray, k: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    nearest = np.argpartition(-sims, k, axis=1)[:, :k]
    top = np.take_along_axis(sims, nearest, 1)
    weights = np.exp((top - top.max(1, keepdims=True)) / tau)
    return nearest, weights / weights.sum(1, keepdims=True)


def captions_from(keys: np.ndarray, anchors: np.ndarray, texts: np.ndarray, k: int, tau: float) -> np.ndarray:
    """Each row's caption from the anchors nearest by `keys` (unit), itself excluded."""
    sims = keys @ keys[anchors].T
    sims[anchors, np.arange(len(anchors))] = -9
    nearest, weights = soft_neighbours(sims, k, tau)
    return unit(np.einsum("nk,nkd->nd", weights, texts[anchors][nearest]))


def train(image_inputs: np.ndarray, text_inputs: np.ndarray, query_inputs: np.ndarray, rows: dict, args) -> tuple:
    torch.manual_seed(args.seed)
    x, t, q = (torch.tensor(a, dtype=torch.float32) for a in (image_inputs, text_inputs, query_inputs))
    image_head, text_head = torch.nn.Linear(x.shape[1], args.dim), torch.nn.Linear(t.shape[1], args.dim)
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    optimiser = torch.optim.AdamW([*image_head.parameters(), *text_head.parameters(), logit_scale], lr=1e-3,
                                  weight_decay=0.01)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.epochs) if args.schedule == "cosine" else None
    anchors = torch.tensor(rows["train"])
    best = (-1.0, 0, 0.0, None, None)
    for epoch in range(args.epochs):
        order = anchors[torch.randperm(len(anchors))]
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            logits = logit_scale.exp().clamp(max=100) * F.normalize(text_head(t[batch]), dim=1) @ F.normalize(image_head(x[batch]), dim=1).T
            labels = torch.arange(len(batch))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if annealing is not None:
            annealing.step()
        with torch.no_grad():
            gallery, queries = F.normalize(image_head(x), dim=1).numpy(), F.normalize(text_head(q), dim=1).numpy()
        val = recall_at_10(queries[rows["val"]] @ gallery.T, rows["val"])
        test = recall_at_10(queries[rows["test"]] @ gallery.T, rows["test"])
        print(f"  epoch {epoch}: validation {val:.3f} test {test:.3f}", flush=True)
        if val > best[0]:
            best = (val, epoch, test, gallery, queries)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=2.0, help="caption scale (x mean CNN norm); 0: no captions")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--tau", type=float, default=0.02)
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    parser.add_argument("--text-side", action="store_true", help="also give texts a 'caption': their neighbours' photos")
    parser.add_argument("--round2", action="store_true", help="captions again from the trained image space's neighbours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    d = cached(args.index)
    T, I, C, Q, b = d["T"], d["I"], d["C"], d["Q"], d["b"]
    rows = {"test": np.flatnonzero(b < 0.2), "val": np.flatnonzero((b >= 0.2) & (b < 0.3)), "train": np.flatnonzero(b >= 0.3)}
    norm = float(np.linalg.norm(I, axis=1).mean())
    base = np.hstack([I, unit(C) * norm])
    caption = captions_from(unit(I), rows["train"], T, args.k, args.tau)
    image_inputs = np.hstack([base, caption * norm * args.scale]) if args.scale > 0 else base
    text_inputs, query_inputs = T, Q
    if args.text_side:  # a text's "caption": the mean photo of the training products with the nearest titles
        text_side = captions_from(unit(T), rows["train"], unit(I), args.k, args.tau)
        sims = unit(Q) @ unit(T)[rows["train"]].T
        sims[rows["train"], np.arange(len(rows["train"]))] = -9
        nearest, weights = soft_neighbours(sims, args.k, args.tau)
        query_side = unit(np.einsum("nk,nkd->nd", weights, unit(I)[rows["train"]][nearest]))
        text_inputs, query_inputs = np.hstack([T, text_side * args.scale]), np.hstack([Q, query_side * args.scale])
    val, epoch, test, gallery, queries = train(image_inputs, text_inputs, query_inputs, rows, args)
    if args.round2:
        caption = captions_from(gallery, rows["train"], T, args.k, args.tau)
        val, epoch, test, gallery, queries = train(np.hstack([base, caption * norm * args.scale]), text_inputs,
                                                   query_inputs, rows, args)
    print(f"BEST epoch {epoch}: validation recall@10 {val:.4f}, held-out test {test:.4f}")
    for extra in (0.1, 0.2, 0.3, 0.5):
        add = {name: recall_at_10(queries[r] @ gallery.T + extra * (Q[r] @ caption.T), r)
               for name, r in (("val", rows["val"]), ("test", rows["test"]))}
        print(f"  +nbr {extra}: validation {add['val']:.4f} test {add['test']:.4f}")


if __name__ == "__main__":
    main()
