"""Indexing throughput and single-query search latency on the fashion catalog, default models.

Indexing throughput comes from build_index's own stage timings (IndexReport.seconds). Each model
is loaded once beforehand (timed apart), so those seconds hold a warm model load, not the imports.
Latency is the wall time of one SearchSession call holding a single query (encoding + FAISS
search + hit assembly), after a warm-up; image files are decoded before the clock starts.

    .venv/bin/python benchmarks/throughput.py [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, index_path, markdown_table, subset_catalog, timed
from vitrina.encoders import load_image_encoder, load_text_encoder
from vitrina.encoders.image_io import load_image
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import IndexReport, build_index
from vitrina.engine.query.search import SearchSession

FASHION_CSV = DATA / "fashion" / "products.csv"
WARMUP = 5
K = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="use only the first N products of the catalog")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the index (default %(default)s)")
    parser.add_argument("--text-queries", type=int, default=200, help="timed text queries (default %(default)s)")
    parser.add_argument("--image-queries", type=int, default=100, help="timed image queries (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling the queries")
    return parser.parse_args(argv)


def seconds(run: Callable[[], object]) -> float:
    return timed(run)[1]


def latencies_ms(run: Callable[[object], object], queries: Sequence[object]) -> np.ndarray:
    """Run each query alone after WARMUP untimed runs; the wall time of each call in ms."""
    for query in queries[:WARMUP]:
        run(query)
    return np.asarray([seconds(lambda: run(query)) for query in queries]) * 1000


def indexing_rows(report: IndexReport) -> list[list[object]]:
    counts = {"text": report.manifest.product_count}
    if "image" in report.manifest.spaces:
        counts["image"] = report.manifest.spaces["image"].count
    return [
        [f"{stage} indexing", count, f"{report.seconds[stage]:.1f}", f"{count / report.seconds[stage]:.1f}"]
        for stage, count in counts.items()
    ]


def latency_row(name: str, ms: np.ndarray) -> list[object]:
    p50, p99 = np.percentile(ms, [50, 99])
    return [name, len(ms), f"{p50:.1f}", f"{p99:.1f}", f"{ms.mean():.1f}"]


def query_titles(session: SearchSession, count: int, rng: random.Random) -> list[str]:
    rows = rng.sample(range(len(session.products)), min(count, len(session.products)))
    return [session.products.metadata(row)["title"] for row in rows]


def query_images(session: SearchSession, count: int, rng: random.Random) -> list[Image.Image]:
    rows = session.directory.spaces["image"].rows.tolist()
    sample = rng.sample(rows, min(count, len(rows)))
    return [load_image(session.image_source(session.products.ids[row])) for row in sample]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    config = VitrinaConfig(progress=sys.stderr.isatty(), images=DATA_IMAGES)
    catalog = subset_catalog(FASHION_CSV, args.limit, args.out, image_field="image")
    target = index_path(args.out, "throughput-fashion", args.limit)
    load_s = {
        "text": seconds(lambda: load_text_encoder(config.text_model, config.encoders)),
        "image": seconds(lambda: load_image_encoder(config.image_model, config.encoders)),
    }
    print(f"indexing {catalog} into {target} ...")
    report = build_index(catalog, target, config)

    session = SearchSession(target, config)
    rng = random.Random(args.seed)
    titles = query_titles(session, args.text_queries, rng)
    text_ms = latencies_ms(lambda title: session.search([title], k=K, mode="dense"), titles)
    hybrid_ms = latencies_ms(lambda title: session.search([title], k=K), titles)
    images = query_images(session, args.image_queries, rng)
    image_ms = latencies_ms(lambda image: session.similar_to_images([image], k=K), images)

    print()
    print(markdown_table(["stage", "products", "seconds", "products/s"], indexing_rows(report)))
    print()
    print(
        markdown_table(
            ["single query (k=10)", "queries", "p50 ms", "p99 ms", "mean ms"],
            [latency_row("text (title), dense", text_ms), latency_row("text (title), hybrid (default)", hybrid_ms),
             latency_row("image", image_ms)],
        )
    )
    loads = ", ".join(f"{role} {s:.1f} s" for role, s in load_s.items())
    print(f"\nfirst model load (imports + weights), done before indexing and not in its seconds: {loads}")
    if report.image_failures:
        print(f"\n{len(report.image_failures)} images failed to load, e.g. {report.image_failures[0]}")


if __name__ == "__main__":
    main()
