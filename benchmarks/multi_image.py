"""Several images per product on H&M: articles sharing a `product_code` are colour variants of one product.

The catalog treats each product code as one product whose images are its variants' photos (a `|`-separated
image field, as a shop would write it), built with the real indexing path (`build_index`), and queried with
the real `Index.similar(image=...)` (best-image scoring: a product scores its best image; `matched_image`
names it). The alternative scores each product by the normalised mean of its image vectors
(`VectorSpace.product_vectors`, the product's single vector where one is needed).

Split (nothing is trained or tuned here; both scorings are reported, none chosen on these queries):
- codes with at least 2 variants, `--codes` of them sampled with `--seed`;
- per code, the variant with the lowest `heldout_bucket(article_id)` (engine.data.splits) is held out of the
  catalog: (a) its photo queries for its product (a colourway the index has never seen);
- (b) `--queries` indexed variants, their photos flipped and centre-cropped to 90% (a shopper's photo of a
  variant the shop has): rank of the product, and whether `matched_image` names that exact variant's photo,
  or one of the same colour (`colour_group_name`); (c) the same variants' photos cropped off-centre to 70%,
  turned 8 degrees and blurred (shrunk to a third and back), a harder shopper's photo.

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python benchmarks/multi_image.py            # 1,500 codes, 600 queries each
    ... --reuse                                                                      # the index of an earlier run
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, markdown_table  # noqa: I001 (first: fixes sys.path)

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from vitrina.engine.api import Index
from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.engine.data.splits import heldout_bucket

HM = DATA / "hm"


def build_catalog(codes: int, seed: int, out: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """(catalog CSV, the indexed variants, the held-out variants), one held-out variant per product code."""
    articles = pd.read_csv(HM / "articles.csv", dtype=str).fillna("")
    sizes = articles.groupby("product_code").size()
    eligible = sorted(sizes[sizes >= 2].index)
    chosen = set(random.Random(seed).sample(eligible, min(codes, len(eligible))))
    variants = articles[articles.product_code.isin(chosen)].copy()
    variants["bucket"] = [heldout_bucket(a) for a in variants.article_id]
    variants = variants.sort_values(["product_code", "bucket"])
    held = variants.groupby("product_code").head(1)
    kept = variants.drop(held.index).sort_values(["product_code", "article_id"])
    kept = kept.groupby("product_code").head(CatalogConfig.max_images)  # the default cap: the rest would be refused
    rows = []
    for code, group in kept.groupby("product_code", sort=True):
        first = group.iloc[0]
        rows.append({"id": code, "title": first.prod_name, "description": first.detail_desc,
                     "product_type_name": first.product_type_name,
                     "image": "|".join(str(HM / p) for p in group.image)})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "catalog.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, kept, held


def photo(path: Path, shopper: str) -> Image.Image:
    """The query photo: as stored (""), flipped and cropped to 90% ("mild"), or cropped off-centre to 70%,
    turned 8 degrees and shrunk to a third then enlarged back ("strong")."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if shopper == "mild":
        image = ImageOps.mirror(image)
        return image.crop((int(0.05 * w), int(0.05 * h), int(0.95 * w), int(0.95 * h)))
    if shopper == "strong":
        image = image.crop((int(0.20 * w), int(0.05 * h), int(0.90 * w), int(0.75 * h)))
        image = image.rotate(8, resample=Image.BILINEAR, expand=False, fillcolor=(255, 255, 255))
        small = image.resize((max(1, image.width // 3), max(1, image.height // 3)), Image.BILINEAR)
        return small.resize(image.size, Image.BILINEAR)
    return image


def evaluate(index: Index, queries: pd.DataFrame, kept: pd.DataFrame, shopper: str, k: int = 10) -> dict[str, float]:
    """Rank-1 and recall@k of each query's product under best-image and mean-vector scoring; for best-image
    also how often `matched_image` is the query's own photo or a variant of its colour."""
    session = index._session
    space = session.directory.spaces["image"]
    means, mean_rows = space.product_vectors()
    colour_of = dict(zip((str(HM / p) for p in kept.image), kept.colour_group_name))
    ids = session.products.ids
    best1 = best10 = mean1 = mean10 = exact = same_colour = named = 0
    chance = 0.0
    for q in queries.itertuples():
        image = photo(HM / q.image, shopper)
        hits = index.similar(image=image, k=k, space="image")
        found = [h.id for h in hits]
        best1 += found[:1] == [q.product_code]
        best10 += q.product_code in found
        vector = session.encode_images([image], "image")[0]
        top = mean_rows[np.argsort(-(means @ vector))[:k]]
        mean_found = [ids[int(r)] for r in top]
        mean1 += mean_found[:1] == [q.product_code]
        mean10 += q.product_code in mean_found
        own = next((h for h in hits if h.id == q.product_code), None)
        if own is not None and own.matched_image is not None:
            named += 1
            exact += own.matched_image == str(HM / q.image)
            same_colour += colour_of.get(own.matched_image) == q.colour_group_name
            names = session.image_names(session.products.row_of(q.product_code))
            chance += sum(colour_of.get(n) == q.colour_group_name for n in names) / len(names)
    n = len(queries)
    return {"queries": n, "best@1": best1 / n, f"best@{k}": best10 / n, "mean@1": mean1 / n, f"mean@{k}": mean10 / n,
            "named": named, "exact": exact / max(named, 1), "same_colour": same_colour / max(named, 1),
            "colour_chance": chance / max(named, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "multi-image")
    parser.add_argument("--reuse", action="store_true", help="reuse the index built by an earlier run")
    args = parser.parse_args()
    catalog, kept, held = build_catalog(args.codes, args.seed, args.out)
    target = args.out / "index"
    config = VitrinaConfig(progress=False, images=DATA_IMAGES)
    if not (args.reuse and (target / "manifest.json").is_file()):
        started = time.perf_counter()
        report = build_index(catalog, target, config)
        print(f"indexed {report.manifest.product_count} products, {report.manifest.spaces['image'].count} images "
              f"({len(report.image_failures)} failed) in {time.perf_counter() - started:.0f} s", flush=True)
    index = Index(target, config)
    rng = np.random.default_rng(args.seed)
    held_q = held.iloc[rng.permutation(len(held))[:args.queries]]
    kept_q = kept.iloc[rng.permutation(len(kept))[:args.queries]]
    results = {}
    runs = (("(a) held-out colourway", held_q, ""), ("(b) indexed variant, flipped + 90% crop", kept_q, "mild"),
            ("(c) indexed variant, 70% off-centre crop + 8 deg + blur", kept_q, "strong"))
    for name, queries, shopper in runs:
        started = time.perf_counter()
        results[name] = evaluate(index, queries, kept, shopper)
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in results[name].items()},
              f"{time.perf_counter() - started:.0f} s", flush=True)
    print()
    print(markdown_table(
        ["queries", "n", "best-image rank 1", "best-image recall@10", "mean-vector rank 1", "mean-vector recall@10",
         "matched_image = query's variant", "matched_image same colour (chance)"],
        [[name, r["queries"], f"{r['best@1']:.3f}", f"{r['best@10']:.3f}", f"{r['mean@1']:.3f}", f"{r['mean@10']:.3f}",
          f"{r['exact']:.3f}" if not name.startswith("(a)") else "-", f"{r['same_colour']:.3f} ({r['colour_chance']:.3f})"]
         for name, r in results.items()]))


if __name__ == "__main__":
    main()
