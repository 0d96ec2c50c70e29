"""Issue 18 "visually similar": precision@10 of the DEFAULT `similar` on held-out products after
`vitrina train --heldout 0.2 --attributes articleType,baseColour`.

Split (engine.data.splits.heldout_bucket, the hash `vitrina train --heldout` uses): test = bucket < 0.2
(1,618 fashion products: neither the shared-space heads nor the attribute heads train on them, nothing is
chosen on them); validation = [0.2, 0.3) (the weights of the attribute terms are chosen there, by `train`);
the heads train on the rest. Gallery: all 8,083 products; each test product queries by id (its stored
vector, itself excluded) through `SearchSession.similar_to_product` with default settings (the code path of
CLI, HTTP and Python), and a fixed sample of test products (seed 0) queries by uploading its photo
(`similar_to_images`, the product itself left out of its top 10). A hit counts when its articleType
(and baseColour) equals the query's.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/visual_heldout.py --source FASHION_INDEX [--photos 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import DEFAULT_OUT  # noqa: E402
from vitrina.engine.data.splits import heldout_bucket  # noqa: E402
from vitrina.engine.query.search import SearchSession  # noqa: E402

HELDOUT = 0.2
COLUMNS = ("articleType", "baseColour")


def precision(hits: list[list[int]], queries: list[int], labels: list[np.ndarray], k: int = 10) -> tuple[float, float]:
    """Mean precision@k of hits sharing the first label, and sharing all labels."""
    first, both = [], []
    for q, rows in zip(queries, hits):
        rows = np.asarray(rows[:k], dtype=np.int64)
        same = [lab[rows] == lab[q] for lab in labels]
        first.append(same[0].sum() / k)
        both.append(np.logical_and.reduce(same).sum() / k)
    return round(float(np.mean(first)), 4), round(float(np.mean(both)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a fashion index (text + image), copied")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "visual-heldout")
    parser.add_argument("--reuse", action="store_true", help="reuse --out if it is already trained")
    parser.add_argument("--photos", type=int, default=300, help="test products queried by photo upload")
    args = parser.parse_args()
    result: dict = {"source": str(args.source), "split": "test = heldout_bucket < 0.2; validation [0.2, 0.3)",
                    "gallery": "all products"}
    if not (args.reuse and (args.out / "fusion" / "attributes.json").is_file()):
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(args.source, args.out)
        started = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).parent / "vitrina"), "train", str(args.out), "--heldout",
                              str(HELDOUT), "--attributes", ",".join(COLUMNS), "--json", "-q"],
                             check=True, capture_output=True, text=True).stdout
        result["train_seconds"] = round(time.perf_counter() - started, 1)
        result["train"] = json.loads(out)["attributes"]
        print(json.dumps(result["train"], indent=1), flush=True)
    session = SearchSession(args.out)
    products = session.products
    labels = [np.array([str(v) for v in products.table.column(c).to_pylist()], dtype=object) for c in COLUMNS]
    test = [r for r, pid in enumerate(products.ids) if heldout_bucket(pid) < HELDOUT]
    result["gallery_size"], result["test_queries"] = len(products), len(test)
    runs = {}
    started = time.perf_counter()
    default = [[products.row_of(h.id) for h in session.similar_to_product(products.ids[r], 10)] for r in test]
    runs["default similar --id (fused + attribute terms)"] = precision(default, test, labels)
    result["seconds_per_id_query"] = round((time.perf_counter() - started) / len(test), 4)
    for space in ("fused", "image"):  # the stored spaces without attribute terms, for comparison
        vectors = session.directory.spaces[space]
        hits = []
        for r in test:
            scores, rows = vectors.search(vectors.vector_of_row(r)[None, :], 11)
            hits.append([int(x) for x in rows[0] if x != r][:10])
        runs[f"{space} vectors alone (no attribute terms)"] = precision(hits, test, labels)
    sample = sorted(np.random.default_rng(0).choice(test, min(args.photos, len(test)), replace=False).tolist())
    photos = [Image.open(session.image_source(products.ids[r])).convert("RGB") for r in sample]
    started = time.perf_counter()
    for name, space in (("default similar --image (fused + attribute terms)", None), ("similar --image --space image", "image")):
        hits = []
        for start in range(0, len(photos), 32):
            for r, found in zip(sample[start:start + 32], session.similar_to_images(photos[start:start + 32], 11, space)):
                hits.append([products.row_of(h.id) for h in found if products.row_of(h.id) != r][:10])
        runs[f"{name}, {len(sample)} test photos"] = precision(hits, sample, labels)
    result["photo_seconds"] = round(time.perf_counter() - started, 1)
    result["runs"] = runs
    for name, (t, tc) in runs.items():
        print(f"| {name} | {t:.4f} | {tc:.4f} |", flush=True)
    (args.out.parent / f"{args.out.name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
