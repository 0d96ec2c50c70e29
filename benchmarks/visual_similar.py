"""Fashion "similar" by image on held-out products (issue 18): colour descriptor fusion, crop vs pad, flips.

Every vector is cached once under out/visual/ (.npy, rows in products.csv order) and reused:
- image vectors of EfficientNet-Lite0 (the default image model, default ONNX backend) for each framing:
  `pad` (the photo fitted into a white square, what indexing does), `flip` (mirrored), `crop88` /
  `crop75` (the central 87.5% / 75% of the square, resized back up), `crop88flip`;
- colour descriptors (encoders/colour.py) for each ColourConfig of the grid;
- optionally the fused vectors of a trained index (--fused DIR, `vitrina train --heldout 0.2` on a copy
  of the quality.py fashion index), read from the index.

Split by product with engine.data.splits.heldout_bucket (the same hash as `vitrina train --heldout`):
test = bucket < 0.2 (1,618 products, never trained on by the shared-space heads), validation =
0.2 <= bucket < 0.4 (only settings are chosen on it). Each query product ranks all 8,083 products
(itself excluded); precision@10 of hits with the same articleType, and with the same articleType and
baseColour (a missing value never matches).

    .venv/bin/python benchmarks/visual_similar.py [--fused out/fashion-shared] [--framings pad,flip,...]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.encoders.colour import ColourConfig, colour_descriptor
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.factory import load_image_encoder
from vitrina.encoders.base import l2_normalize
from vitrina.engine.data.splits import heldout_bucket

FASHION = DATA / "fashion"
CACHE = DEFAULT_OUT / "visual"
K = 10
TEST, VALID = (0.0, 0.2), (0.2, 0.4)
SUBSET = 0.4  # framings are compared among the products with bucket < 0.4 (test + validation, 3,235)
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5)
COLOUR_GRID = {  # name -> settings; the first is ColourConfig's default
    "lab488-fg245-c0.3": ColourConfig(),
    "lab488-fg245-uniform": ColourConfig(sigma=None),
    "lab488-all-c0.3": ColourConfig(background=None),
    "lab488-fg245-c0.2": ColourConfig(sigma=0.2),
    "lab366-fg245-c0.3": ColourConfig(bins=(3, 6, 6)),
    "lab488-fg245-c0.3-hard": ColourConfig(soft=False),
}


def read_catalog() -> tuple[list[str], list[str], list[str], list[Path]]:
    """ids, articleType, baseColour and image paths, in products.csv order."""
    with (FASHION / "products.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return ([r["id"] for r in rows], [r["articleType"] for r in rows], [r["baseColour"] for r in rows],
            [FASHION / r["image"] for r in rows])


def frame(img: Image.Image, framing: str) -> Image.Image:
    """The photo as a framing sees it: centre crop and/or mirror of the (already square) photo."""
    img = img.convert("RGB")
    if framing.startswith("crop"):
        share = {"crop88": 0.875, "crop75": 0.75}[framing.removesuffix("flip")]
        w, h = img.size
        cw, ch = round(w * share), round(h * share)
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    if framing.endswith("flip"):
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def cached(name: str, build) -> np.ndarray:
    path = CACHE / f"{name}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    array = build()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    print(f"cached {path.name} {array.shape} in {time.perf_counter() - started:.0f} s", flush=True)
    return array


def encode_framing(paths: list[Path], framing: str, batch: int = 64) -> np.ndarray:
    """Image vectors of every photo under one framing (decoding in a thread beside the encoder)."""
    encoder = load_image_encoder("efficientnet-lite0", EncoderConfig(catalog=True))
    load = lambda chunk: [frame(Image.open(p), framing) for p in chunk]
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    out = []
    with ThreadPoolExecutor(1) as pool:
        for images in pool.map(load, chunks):
            out.append(encoder.encode(images))
    return np.vstack(out)


def colour_all(paths: list[Path], config: ColourConfig) -> np.ndarray:
    return np.stack([colour_descriptor(Image.open(p), config) for p in paths])


def cache_colours(paths: list[Path], names: list[str]) -> None:
    """Every colour descriptor of the grid, each photo decoded once."""
    todo = [n for n in names if not (CACHE / f"colour-{n}.npy").exists()]
    if not todo:
        return
    started = time.perf_counter()
    rows = {n: [] for n in todo}
    for p in paths:
        img = Image.open(p).convert("RGB")
        for n in todo:
            rows[n].append(colour_descriptor(img, COLOUR_GRID[n]))
    CACHE.mkdir(parents=True, exist_ok=True)
    for n in todo:
        np.save(CACHE / f"colour-{n}.npy", np.stack(rows[n]))
    print(f"cached {len(todo)} colour descriptors of {len(paths)} photos in {time.perf_counter() - started:.0f} s", flush=True)


def index_vectors(index_dir: Path, ids: list[str], space_name: str) -> np.ndarray:
    """The stored vector of every product in one space of an index ("image", or "fused" once trained), in `ids` order."""
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.query.search import SearchSession

    session = SearchSession(index_dir, VitrinaConfig(progress=False))
    space = session.directory.spaces[space_name]
    return np.stack([space.vector_of_row(session.products.row_of(pid)) for pid in ids]).astype(np.float32)


class Judge:
    """precision@10 of query rows against the whole catalog, for a score matrix or vectors."""

    def __init__(self, types: list[str], colours: list[str]) -> None:
        self.types = np.array(types)
        pairs = [f"{t}|{c}" if c else f"missing-{i}" for i, (t, c) in enumerate(zip(types, colours))]
        self.pairs = np.array(pairs)
        self.has_colour = np.array([bool(c) for c in colours])

    def precision(self, queries: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
        """(same type, same type and colour) precision@10 for queries' rows of a query x catalog score matrix."""
        scores = scores.copy()
        scores[np.arange(len(queries)), queries] = -np.inf  # itself excluded
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        same_type = (self.types[top] == self.types[queries][:, None]).mean(axis=1)
        same_both = (self.pairs[top] == self.pairs[queries][:, None]).mean(axis=1) * self.has_colour[queries]
        return float(same_type.mean()), float(same_both.mean())

    def ceiling(self, queries: np.ndarray) -> tuple[float, float]:
        """The best possible precision@10 given how many other products share the query's labels."""
        def best(labels: np.ndarray) -> float:
            _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
            return float(np.minimum(counts[inverse][queries] - 1, K).mean() / K)
        return best(self.types), best(self.pairs)


def scores_of(parts: list[tuple[np.ndarray, float]], queries: np.ndarray) -> np.ndarray:
    """Sum of weight x cosine over (vectors, weight) parts, query rows against all rows."""
    total = None
    for vectors, weight in parts:
        if weight == 0:
            continue
        s = weight * (vectors[queries] @ vectors.T)
        total = s if total is None else total + s
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fused", type=Path, help="a trained copy of the fashion index (its fused vectors)")
    parser.add_argument("--index", type=Path, help="the quality.py fashion index (its image vectors = the pad framing)")
    parser.add_argument("--framings", default="flip,crop88,crop88flip")
    parser.add_argument("--colours", default=",".join(COLOUR_GRID))
    args = parser.parse_args()
    ids, types, colours, paths = read_catalog()
    judge = Judge(types, colours)
    bucket = np.array([heldout_bucket(i) for i in ids])
    split = {name: np.flatnonzero((bucket >= lo) & (bucket < hi)) for name, (lo, hi) in (("test", TEST), ("valid", VALID))}
    print(f"{len(ids)} products; test {len(split['test'])}, validation {len(split['valid'])}")
    results: dict = {"ceiling": {s: judge.ceiling(q) for s, q in split.items()}}
    print("ceiling (type, type+colour):", results["ceiling"])

    pad = cached("image-pad", lambda: index_vectors(args.index, ids, "image") if args.index
                 else encode_framing(paths, "pad"))
    sub = np.flatnonzero(bucket < SUBSET)  # framings are re-encoded on this subset only (CPU time)
    sub_paths = [paths[i] for i in sub]
    framings = {"pad": pad[sub]}
    for f in args.framings.split(","):
        if f != "pad":
            framings[f] = cached(f"image-{f}-sub{SUBSET}", lambda f=f: encode_framing(sub_paths, f))
    combos = dict(framings)
    if "flip" in framings:
        combos["pad+flip"] = l2_normalize(framings["pad"] + framings["flip"])
    if "crop88" in framings:
        combos["pad+crop88"] = l2_normalize(framings["pad"] + framings["crop88"])
    if "crop88flip" in framings:
        combos["crop88+flip"] = l2_normalize(framings["crop88"] + framings["crop88flip"])
    sub_judge = Judge([types[i] for i in sub], [colours[i] for i in sub])
    sub_split = {s: np.flatnonzero(np.isin(sub, q)) for s, q in split.items()}
    results["framing_subset"] = {"products": len(sub), "ceiling": {s: sub_judge.ceiling(q) for s, q in sub_split.items()}}
    rows = []
    for name, vectors in combos.items():
        found = {s: sub_judge.precision(q, scores_of([(vectors, 1.0)], q)) for s, q in sub_split.items()}
        results["framing_subset"][name] = found
        rows.append([name, *(f"{found[s][i]:.4f}" for s in ("valid", "test") for i in (0, 1))])
    print(f"framings, gallery = the {len(sub)} products with bucket < {SUBSET} (ceiling {results['framing_subset']['ceiling']})")
    print(markdown_table(["image vectors", "valid type", "valid type+colour", "test type", "test type+colour"], rows))

    bases = {"pad": pad}
    if args.fused:
        from vitrina.engine.learn.fusion import FUSED_SPACE
        bases["fused"] = cached("fused", lambda: index_vectors(args.fused, ids, FUSED_SPACE))
    results["colour"] = {}
    cache_colours(paths, args.colours.split(","))
    for cname in args.colours.split(","):
        colour = cached(f"colour-{cname}", lambda c=COLOUR_GRID[cname]: colour_all(paths, c))
        for bname, base in bases.items():
            rows = []
            sweep = {}
            for w in WEIGHTS:
                sweep[w] = {s: judge.precision(q, scores_of([(base, 1.0), (colour, w)], q)) for s, q in split.items()}
                rows.append([f"{w:g}", *(f"{sweep[w][s][i]:.4f}" for s in ("valid", "test") for i in (0, 1))])
            results["colour"][f"{bname}/{cname}"] = sweep
            print(f"\n{bname} + colour {cname}")
            print(markdown_table(["weight", "valid type", "valid type+colour", "test type", "test type+colour"], rows))
    out = DEFAULT_OUT / "visual_similar.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
