"""`vitrina demo`: index the bundled 500-product fashion catalog and show a few searches."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitrina.cli.common import add_model_flags, config_from_args
from vitrina.cli.output import console, results_table
from vitrina.engine.api import Index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.demo import DEMO_CATALOG
from vitrina.index import IndexManifest, IndexStoreError

DEMO_QUERIES = (
    "red top for women",
    "waterproof sports shoes for running",
    "leather wallet for men",
    "analog watch with a metal strap",
)
DEMO_IMAGE_PRODUCT = "10018"  # Nike track pants


def default_demo_dir() -> Path:
    return Path.home() / ".cache" / "vitrina" / "demo"


def _index_is_current(out: Path, config: VitrinaConfig) -> bool:
    """Whether `out` already holds the demo catalog indexed with the configured models."""
    from vitrina.engine.build.encode import absolute_spec

    try:
        manifest = IndexManifest.load(out)
    except IndexStoreError:
        return False
    spaces = manifest.spaces
    return (
        manifest.catalog.get("source") == str(DEMO_CATALOG.resolve())
        and "text" in spaces and spaces["text"].model == absolute_spec(config.text_model)
        and "image" in spaces and spaces["image"].model == absolute_spec(config.image_model or "")
    )


def run_demo(out: Path | None = None, config: VitrinaConfig | None = None, rebuild: bool = False) -> Path:
    """Build (or reuse) the demo index and print result tables for text queries and one image lookup."""
    from vitrina.engine.build.indexing import build_index

    config = config or VitrinaConfig()
    out = out or default_demo_dir()
    con = console()
    if rebuild or not _index_is_current(out, config):
        con.print(f"Indexing the demo catalog ({DEMO_CATALOG}) into {out} ...")
        report = build_index(DEMO_CATALOG, out, config)
        con.print(f"Indexed {report.manifest.product_count} products "
                  f"(text {report.seconds.get('text', 0):.1f}s, images {report.seconds.get('image', 0):.1f}s)")
    else:
        con.print(f"Using the demo index in {out} (--rebuild to re-index)")
    index = Index(out, config)
    fields = index.manifest.catalog["text_fields"]
    for query, hits in zip(DEMO_QUERIES, index.search(list(DEMO_QUERIES), k=5)):
        con.print(results_table(f"Search: {query}", hits, fields, hide=["image"]))
    title = index.product(DEMO_IMAGE_PRODUCT).get("title")
    hits = index.similar(DEMO_IMAGE_PRODUCT, k=5)
    con.print(results_table(f"Looks like product {DEMO_IMAGE_PRODUCT} ({title})", hits, fields, hide=["image"]))
    con.print(f"\nTry: vitrina search {out} \"your query\"   |   vitrina similar {out} --image photo.jpg")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out) if args.out else None, config_from_args(args), rebuild=args.rebuild)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="index the bundled demo catalog and show some searches")
    p.add_argument("--out", default=None, metavar="DIR", help="where to keep the demo index (default ~/.cache/vitrina/demo)")
    p.add_argument("--rebuild", action="store_true", help="re-index even if the demo index exists")
    add_model_flags(p, search=False)
    p.set_defaults(func=cmd_demo)
