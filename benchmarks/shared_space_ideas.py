"""Issue 18, shared space: ideas for text -> image on frozen vectors, measured on held-out products.

Reads a fashion index with text and image vectors (as shared_space.py trains on), caches its frozen
text and image vectors and the vectors of attribute prompts ("a {baseColour} {articleType} for
{gender}") under out/shared-ideas/*.npy, then trains heads for each idea on the cached vectors.

Split (as `vitrina train --heldout 0.2 --validation 0.1`): products whose id hash is < 0.2 are the
held-out TEST products (never trained on, never used to choose anything); hash in [0.2, 0.3) is the
VALIDATION split that picks the best epoch and the settings; the rest are trained on. The figure is
shared_space.py's: each test product's title against all 8,083 images, recall@10 of its own image.

    (cd benchmarks && ../.venv/bin/python shared_space_ideas.py --fashion out/quality-fashion-image)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchutil import DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.query.search import SearchSession

CACHE = DEFAULT_OUT / "shared-ideas"
HELDOUT, VALIDATION = 0.2, 0.1


def prompt(meta: dict) -> str:
    """The attribute prompt of one product, from its catalog columns."""
    return f"a {meta.get('baseColour') or ''} {meta.get('articleType') or ''} for {meta.get('gender') or ''}".replace("  ", " ")


def cached_vectors(index: Path) -> dict[str, np.ndarray]:
    """text, image, prompt vectors (rows = products) and attribute keys, cached as .npy."""
    CACHE.mkdir(parents=True, exist_ok=True)
    names = ("text", "query", "image", "prompt", "key", "bucket")
    if all((CACHE / f"{n}.npy").is_file() for n in names):
        return {n: np.load(CACHE / f"{n}.npy", allow_pickle=False) for n in names}
    session = SearchSession(index, VitrinaConfig(progress=False))
    products = session.products
    n = len(products)
    spaces = session.directory.spaces
    out = {}
    for modality in ("text", "image"):
        space = spaces[modality]
        assert len(space.rows) == n, f"{modality} covers {len(space.rows)} of {n} products"
        full = np.zeros((n, space.vectors.shape[1]), np.float32)
        full[np.asarray(space.rows)] = space.vectors
        out[modality] = full
    metas = [products.metadata(r) for r in range(n)]
    from vitrina.engine.evaluate.evaluation import product_texts
    out["query"] = session.encode_queries(product_texts(session), "text").astype(np.float32)  # as eval encodes queries
    out["prompt"] = session.encode_queries([prompt(m) for m in metas], "text").astype(np.float32)
    keys = [f"{m.get('articleType')}|{m.get('baseColour')}|{m.get('gender')}" for m in metas]
    uniq = {k: i for i, k in enumerate(sorted(set(keys)))}
    out["key"] = np.array([uniq[k] for k in keys], np.int64)
    out["bucket"] = np.array([heldout_bucket(p) for p in products.ids], np.float64)
    for name, array in out.items():
        np.save(CACHE / f"{name}.npy", array)
    return out


@dataclass(frozen=True)
class Idea:
    name: str
    dim: int = 256
    epochs: int = 15
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    temperature: float = 0.07
    learn_temperature: bool = True
    keep_text: float = 3.0
    mlp_text: bool = False
    mlp_image: bool = False
    hidden: int = 1024
    dropout: float = 0.1
    multi_positive: float = 0.0  # in-batch weight of another product with the same type|colour|gender (own = 1)
    prompt_weight: float = 0.0  # weight of the prompt <-> image loss (supervised contrastive over attribute keys)
    colour: float = 0.0  # scale of the colour descriptor (colour_features.py) joined to the image vector; 0: none
    colour_file: str = "colour.npy"  # colour.npy / colour-v1.npy: HSV (hue from 0 / centred on red); colour-lab.npy: encoders.colour
    seed: int = 0


class Head(torch.nn.Module):
    """Linear, or linear plus a residual MLP branch."""

    def __init__(self, d_in: int, dim: int, mlp: bool, hidden: int, dropout: float):
        super().__init__()
        self.linear = torch.nn.Linear(d_in, dim)
        self.mlp = (torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                        torch.nn.Linear(hidden, dim)) if mlp else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y if self.mlp is None else y + self.mlp(x)


def recall_at_10(text_head: Head, image_head: Head, queries: torch.Tensor, rows: np.ndarray, images: torch.Tensor) -> float:
    text_head.eval(), image_head.eval()
    with torch.no_grad():
        gallery = F.normalize(image_head(images), dim=-1)
        q = F.normalize(text_head(queries[rows]), dim=-1)
        scores = q @ gallery.T
        own = scores[torch.arange(len(rows)), torch.from_numpy(rows)]
        value = float(((scores > own[:, None]).sum(1) < 10).float().mean())
    text_head.train(), image_head.train()
    return value


def run(idea: Idea, data: dict[str, np.ndarray], heads: list | None = None) -> dict:
    """Train one idea; its figures (and, when `heads` is a list, the chosen text and image heads appended)."""
    torch.manual_seed(idea.seed)
    rng = np.random.default_rng(idea.seed)
    started = time.perf_counter()
    text, image = torch.from_numpy(data["text"]), torch.from_numpy(data["image"])
    if idea.colour > 0:
        norm = float(np.linalg.norm(data["image"], axis=1).mean())  # the colour block at `colour` x the CNN's scale
        image = torch.cat([image, torch.from_numpy(idea.colour * norm * np.load(CACHE / idea.colour_file))], dim=1)
    query, prompts, key = torch.from_numpy(data["query"]), torch.from_numpy(data["prompt"]), torch.from_numpy(data["key"])
    bucket = data["bucket"]
    test_rows = np.flatnonzero(bucket < HELDOUT)
    val_rows = np.flatnonzero((bucket >= HELDOUT) & (bucket < HELDOUT + VALIDATION))
    train_rows = np.flatnonzero(bucket >= HELDOUT + VALIDATION)
    th = Head(text.shape[1], idea.dim, idea.mlp_text, idea.hidden, idea.dropout)
    ih = Head(image.shape[1], idea.dim, idea.mlp_image, idea.hidden, idea.dropout)
    scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / idea.temperature))), requires_grad=idea.learn_temperature)
    params = [*th.parameters(), *ih.parameters()] + ([scale] if idea.learn_temperature else [])
    opt = torch.optim.AdamW(params, lr=idea.lr, weight_decay=idea.weight_decay)

    def soft_nce(a: torch.Tensor, b: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = scale.exp().clamp(max=100.0) * a @ b.T
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2

    best = (recall_at_10(th, ih, query, val_rows, image), 0, None)
    for epoch in range(1, idea.epochs + 1):
        order = rng.permutation(train_rows)
        for start in range(0, len(order), idea.batch_size):
            idx = torch.from_numpy(order[start : start + idea.batch_size])
            if len(idx) < 2:
                continue
            t = F.normalize(th(text[idx]), dim=-1)
            v = F.normalize(ih(image[idx]), dim=-1)
            same = (key[idx, None] == key[None, idx]).float()
            eye = torch.eye(len(idx))
            targets = eye + idea.multi_positive * (same - eye)
            loss = soft_nce(t, v, targets / targets.sum(1, keepdim=True))
            if idea.prompt_weight > 0:
                p = F.normalize(th(prompts[idx]), dim=-1)
                loss = loss + idea.prompt_weight * soft_nce(p, v, same / same.sum(1, keepdim=True))
            if idea.keep_text > 0:
                raw = F.normalize(text[idx], dim=-1)
                loss = loss + idea.keep_text * ((t @ t.T - raw @ raw.T) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = recall_at_10(th, ih, query, val_rows, image)
        if score > best[0]:
            best = (score, epoch, ({k: v.clone() for k, v in th.state_dict().items()},
                                   {k: v.clone() for k, v in ih.state_dict().items()}))
    if best[2] is not None:
        th.load_state_dict(best[2][0]), ih.load_state_dict(best[2][1])
    if heads is not None:
        heads.extend([th, ih])
    return {"idea": idea.name, "settings": asdict(idea), "validation_r10": round(best[0], 4), "best_epoch": best[1],
            "test_r10": round(recall_at_10(th, ih, query, test_rows, image), 4),
            "seconds": round(time.perf_counter() - started, 1), "test_queries": len(test_rows)}


IDEAS = {
    "linear": Idea("linear (today's `vitrina train`)"),
    "mlp-image": Idea("MLP image head", mlp_image=True),
    "mlp-both": Idea("MLP text and image heads", mlp_text=True, mlp_image=True),
    "multi-0.1": Idea("multi-positive 0.1", multi_positive=0.1),
    "multi-0.3": Idea("multi-positive 0.3", multi_positive=0.3),
    "prompt-0.5": Idea("attribute prompts 0.5", prompt_weight=0.5),
    "prompt-1": Idea("attribute prompts 1.0", prompt_weight=1.0),
    "colour-0.5": Idea("colour descriptor 0.5", colour=0.5),
    "colour-1": Idea("colour descriptor 1.0", colour=1.0),
    "colour-2": Idea("colour descriptor 2.0", colour=2.0),
    "colour-v1": Idea("colour descriptor 1.0, engine binning", colour=1.0, colour_file="colour-v1.npy"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion", type=Path, default=DEFAULT_OUT / "quality-fashion-image")
    parser.add_argument("--ideas", default=",".join(IDEAS), help=f"comma-separated: {', '.join(IDEAS)}")
    parser.add_argument("--set", action="append", default=[], help="override an Idea field for all ideas, e.g. epochs=30")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "shared_space_ideas.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = cached_vectors(args.fashion)
    rows = []
    for name in args.ideas.split(","):
        idea = IDEAS[name]
        for item in args.set:
            field, value = item.split("=")
            current = getattr(idea, field)
            idea = replace(idea, **{field: type(current)(value) if not isinstance(current, bool) else value == "true"})
            idea = replace(idea, name=f"{idea.name} {item}")
        result = run(idea, data)
        print(json.dumps(result), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        rows.append([result["idea"], result["validation_r10"], result["best_epoch"], result["test_r10"], result["seconds"]])
    print(markdown_table(["idea", "validation R@10", "best epoch", "held-out R@10", "seconds"], rows))


if __name__ == "__main__":
    main()
