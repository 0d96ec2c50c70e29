"""Shared-space targets of issue 5 on ../shared/data: text -> image on fashion, fused image lookups,
and Home Depot text search through the fused space.

Inputs: FASHION, an index of fashion/products.csv with text and image vectors (`vitrina index`, the
default models), and HD, an index of homedepot/products.csv titles with BM25 (as relevance.py uses).
Both are copied, never changed.

    (cd benchmarks && ../.venv/bin/python shared_space.py --fashion out/quality-fashion-image --hd out/hd-hybrid)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchutil import DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import evaluate_cross_modal, evaluate_image, evaluate_text, read_qrels
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel
from vitrina.engine.query.search import SearchSession
from vitrina.engine.learn.shared_space import apply_shared_space
from relevance import QRELS, split

HELDOUT = 0.2


def vitrina(*args: str) -> tuple[float, float]:
    """Run the CLI; (wall seconds, peak RSS MiB of the child)."""
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "vitrina"), *args], check=True, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.perf_counter() - started, peak


def fresh_copy(source: Path, name: str) -> Path:
    out = DEFAULT_OUT / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out)
    return out


def random_heads(model: FusionModel, seed: int = 0) -> FusionModel:
    """The untrained baseline: the same head shapes at PyTorch's default initialisation scale."""
    rng = np.random.default_rng(seed)
    heads = {m: (rng.uniform(-1, 1, w.shape).astype(np.float32) / np.sqrt(w.shape[0]), np.zeros_like(b))
             for m, (w, b) in model.heads.items()}
    return FusionModel(model.dim, heads, model.inputs, model.weights, {"settings": {"heldout": HELDOUT}}, model.text_share,
                       colour=model.colour, captions=model.captions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion", type=Path, default=DEFAULT_OUT / "quality-fashion-image")
    parser.add_argument("--hd", type=Path, default=DEFAULT_OUT / "hd-hybrid")
    parser.add_argument("--colour", default=None, metavar="S", help="`vitrina train --colour S` (default: train's default)")
    parser.add_argument("--captions", default=None, metavar="S", help="`vitrina train --captions S` (default: train's default)")
    args = parser.parse_args()
    config = VitrinaConfig(progress=False)
    results: dict = {}

    fashion = fresh_copy(args.fashion, "fashion-shared")
    seconds, peak = vitrina("train", str(fashion), "--heldout", str(HELDOUT), "-q",
                            *(["--colour", args.colour] if args.colour is not None else []),
                            *(["--captions", args.captions] if args.captions is not None else []))
    model = FusionModel.load(fashion / FUSION_DIR)
    results["train"] = {"wall_s": round(seconds, 1), "peak_rss_mib": round(peak), **model.training["report"]}
    print(f"train: {seconds:.1f} s wall, peak RSS {peak:.0f} MiB, best epoch {model.training['report']['best_epoch']}")

    session = SearchSession(fashion, config)
    cross = evaluate_cross_modal(session, progress=False).method("dense")
    image_raw = evaluate_image(session, "articleType", progress=False).method("dense")
    image_fused = evaluate_image(session, "articleType", progress=False, space="fused")
    baseline_dir = fresh_copy(args.fashion, "fashion-untrained")
    apply_shared_space(baseline_dir, random_heads(model), config)
    baseline = evaluate_cross_modal(SearchSession(baseline_dir, config), progress=False).method("dense")
    shutil.rmtree(baseline_dir)
    rows = [["text -> image, trained heads (held-out products)", f"{cross.mean('recall@1'):.4f}",
             f"{cross.mean('recall@10'):.4f}", f"{cross.mean('mrr@10'):.4f}"],
            ["text -> image, untrained heads (same queries)", f"{baseline.mean('recall@1'):.4f}",
             f"{baseline.mean('recall@10'):.4f}", f"{baseline.mean('mrr@10'):.4f}"]]
    print(markdown_table(["fashion", "recall@1", "recall@10", "MRR@10"], rows))
    results["cross_modal"] = {"trained": cross.summary(["recall@1", "recall@10", "mrr@10"]), "queries": len(cross.per_query),
                              "untrained": baseline.summary(["recall@1", "recall@10", "mrr@10"])}
    image_rows = [["raw image vectors", f"{image_raw.mean('precision@10'):.4f}", f"{image_raw.mean('map@10'):.4f}"]]
    image_rows += [[m.label, f"{m.mean('precision@10'):.4f}", f"{m.mean('map@10'):.4f}"] for m in image_fused.methods]
    print(markdown_table(["image lookups (same articleType)", "precision@10", "mAP@10"], image_rows))
    results["image"] = {"raw": image_raw.summary(["precision@10", "map@10"]),
                        **{m.name: m.summary(["precision@10", "map@10"]) for m in image_fused.methods}}

    hd = fresh_copy(args.hd, "hd-fused")
    notes = apply_shared_space(hd, model, config)  # heads learned on fashion: same text model, no images here
    test = split(read_qrels(QRELS))["test"]
    hd_session = SearchSession(hd, config)
    hd_rows = []
    results["homedepot"] = {"notes": notes}
    for space in ("text", "fused"):
        ev = evaluate_text(hd_session, test, 10, progress=False, space=space)
        ndcg = {m.name: round(m.mean("ndcg@10"), 4) for m in ev.methods}
        results["homedepot"][space] = ndcg
        hd_rows.append([space, *(f"{ndcg[m]:.4f}" for m in ("lexical", "dense", "hybrid"))])
    print(markdown_table(["Home Depot test split, space", "BM25", "dense", "hybrid"], hd_rows))
    out = DEFAULT_OUT / "shared_space.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
