"""`vitrina index`, `reindex`, `upsert` and `delete`: catalogs into index directories and versioned roots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vitrina.cli.common import add_catalog_flags, config_from_args, print_lines
from vitrina.cli.output import print_json
from vitrina.cli.rules import add_rules_flag, build_rules_setting, check_built_rules
from vitrina.engine.build.groups import DUPLICATE_COSINE
from vitrina.cli.synonyms import SYNONYMS_HELP
from vitrina.index import IndexManifest
from vitrina.index.synonyms import SYNONYMS_FILE, Synonyms

if TYPE_CHECKING:  # the build pipeline is imported by the commands that build (a search never loads it)
    from vitrina.engine.build.indexing import IndexReport
    from vitrina.engine.build.reindex import ReindexConfig, ReindexReport
    from vitrina.engine.build.updates import UpdateReport

ENGINES = ("local", "ray")  # engine.build.pipeline.ENGINES (a test checks they are equal)

RETRAIN_HELP = ("retrain the shared-space heads for the new version (else they are reused when its encoders "
                "match, and the fused space is left out with a note when they do not)")
KEEP_HELP = "versions kept after publishing (default 3)"
JSON_REPORT_HELP = "print the report as one JSON object"


def cmd_index(args: argparse.Namespace) -> int:
    from vitrina.engine.build.indexing import build_index

    config = config_from_args(args)
    heads = None
    if args.fusion_from:  # read before indexing: --out may be the same directory
        from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel

        heads = FusionModel.load(Path(args.fusion_from) / FUSION_DIR)
    report = build_index(args.catalog, args.out, config, settings_files=settings_files(args))
    notes = []
    if heads is not None:
        from vitrina.engine.learn.shared_space import apply_shared_space

        notes = apply_shared_space(Path(args.out), heads, config)
        report.manifest = IndexManifest.load(Path(args.out))
    print_lines(index_lines(report, notes))
    check_built_rules(args, args.out)
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from vitrina.engine.build.reindex import reindex

    report = reindex(args.catalog, args.out, config_from_args(args), reindex_config(args), resume=args.resume,
                     retrain=args.retrain, settings_files=settings_files(args))
    if args.json:
        print_json(report.to_json())
    else:
        print_lines(reindex_lines(report))
    check_built_rules(args, args.out)
    return 0


def cmd_upsert(args: argparse.Namespace) -> int:
    from vitrina.engine.build.updates import upsert

    report = upsert(args.dir, args.catalog, config_from_args(args), reindex_config(args), retrain=args.retrain)
    print_update(args, report)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from vitrina.engine.build.updates import delete

    report = delete(args.dir, args.ids, config_from_args(args), reindex_config(args), retrain=args.retrain)
    print_update(args, report)
    return 0


def settings_files(args: argparse.Namespace) -> dict[str, bytes]:
    """The index settings files (engine.build.settings) that flags of `vitrina index`/`reindex` give: name -> bytes.
    A feature storing a file at build time adds its flag's line here."""
    files: dict[str, bytes] = {}
    files.update(build_rules_setting(args))  # --rules FILE (vitrina.cli.rules)
    if getattr(args, "synonyms", None):
        files[SYNONYMS_FILE] = Synonyms.read(args.synonyms).to_bytes()
    return files


def reindex_config(args: argparse.Namespace) -> ReindexConfig:
    """The ReindexConfig of whichever of --shard-size, --keep, --engine, --target-recall, --ray-actors a command has."""
    from vitrina.engine.build.reindex import ReindexConfig

    get = lambda name, default: getattr(args, name, default)  # noqa: E731
    return ReindexConfig(shard_size=get("shard_size", None), keep=get("keep", 3), engine=get("engine", "local"),
                         target_recall=get("target_recall", 0.95), ray_actors=get("ray_actors", None))


def index_lines(report: IndexReport, notes: list[str]) -> list[str]:
    m = report.manifest
    lines = [f"Indexed {m.product_count} products into {report.out}"]
    for name, info in m.spaces.items():
        lines.append(f"  {name}: {info.count} vectors, {info.dim}-d, {info.factory}, encoder {info.encoder}")
    if report.image_failures:
        first = "; ".join(f"{pid}: {why}" for pid, why in report.image_failures[:5])
        lines.append(
            f"  images failed: {len(report.image_failures)} (indexed by text only). First: {first}"
        )
    return lines + [f"  note: {note}" for note in notes]


def reindex_lines(report: ReindexReport) -> list[str]:
    lines = [f"Re-indexed {report.products} products into {report.path} (now current in {report.root})",
             f"  shards: {report.shards} ({report.resumed_shards} done before the resume)" if report.resumed_shards
             else f"  shards: {report.shards}"]
    for space in report.encoded:
        lines.append(f"  {space}: {report.encoded[space]} encoded, {report.reused[space]} unchanged and kept")
    for space, tuned in report.tuning.items():
        lines.append(f"  {space} index: {tuned['parameter']}={tuned['value']} for recall@{tuned['k']} {tuned['recall']:.3f}"
                     f" (target {tuned['target']})")
    if report.images_failed:
        first = "; ".join(f"{pid}: {why}" for pid, why in report.failures[:5])
        lines.append(f"  images failed: {report.images_failed} (indexed by text only). First: {first}")
    lines.append("  seconds: " + ", ".join(f"{stage} {s:.1f}" for stage, s in report.seconds.items()))
    if report.removed_versions:
        lines.append(f"  removed old versions: {', '.join(report.removed_versions)}")
    return lines + [f"  note: {note}" for note in report.notes]


def print_update(args: argparse.Namespace, report: UpdateReport) -> None:
    if args.json:
        print_json(report.to_json())
    else:
        print_lines(update_lines(report))


def update_lines(report: UpdateReport) -> list[str]:
    lines = [f"{report.root}: now version {report.version} with {report.products} products"]
    lines.append(f"  added {report.added}, updated {report.updated}, unchanged {report.unchanged}, deleted {report.deleted}")
    if report.encoded:
        lines.append("  encoded: " + ", ".join(f"{space} {n}" for space, n in report.encoded.items()))
    if report.not_found:
        lines.append(f"  not in the index (skipped): {len(report.not_found)}, e.g. {', '.join(report.not_found[:5])}")
    if report.images_failed:
        lines.append(f"  images failed: {report.images_failed} (indexed by text only)")
    if report.dropped_spaces:
        lines.append(f"  note: dropped {', '.join(report.dropped_spaces)}; run again with --retrain, or "
                     f"`vitrina train {report.root}`, to make them again")
    return lines + [f"  note: {note}" for note in report.notes]


def add_grouping_flags(p: argparse.ArgumentParser) -> None:
    """--group-field, --collapse-duplicates and --duplicate-cosine: one hit per product group (engine.build.groups)."""
    p.add_argument("--group-field", default=None, metavar="F",
                   help="products with the same value of column F are one group (e.g. product_code: the colours of "
                        "one product); search, similar and recommend show one hit per group, the others as variants")
    p.add_argument("--collapse-duplicates", action="store_true",
                   help="without a group field: group products whose normalised title is equal and whose images are "
                        "near-identical (text-only catalogs: equal titles)")
    p.add_argument("--duplicate-cosine", type=float, default=DUPLICATE_COSINE, metavar="C",
                   help=f"image cosine from which --collapse-duplicates groups equal titles (default {DUPLICATE_COSINE})")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed a catalog and build an index directory")
    p.add_argument("catalog", metavar="CATALOG", help="catalog file: .csv, .tsv, .jsonl or .parquet")
    p.add_argument("--out", required=True, metavar="DIR", help="index directory (replaced only when indexing succeeds)")
    add_catalog_flags(p)
    add_grouping_flags(p)
    p.add_argument("--fusion-from", default=None, metavar="DIR",
                   help="add a shared space with the heads `vitrina train` learned on another index (same encoders)")
    add_rules_flag(p)
    p.add_argument("--synonyms", default=None, metavar="FILE", help=SYNONYMS_HELP)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("reindex", help="re-embed a catalog into a new version of a versioned root, resumably, then switch to it")
    p.add_argument("catalog", metavar="CATALOG", help="catalog file: .csv, .tsv, .jsonl or .parquet")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="versioned root: DIR/current links the live version under DIR/versions/")
    p.add_argument("--resume", action="store_true", help="continue an interrupted re-index from its last finished shard")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="products per checkpointed shard (default: automatic, a twentieth of the catalog, at least 200 "
                        "and at most 5000, so a resume redoes about 5%% of the work at most)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help=KEEP_HELP)
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the encode stage runs: this process, or Ray actors (ray.init() finds the cluster)")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N", help="encoder actors on Ray (default: one per GPU, else 2)")
    p.add_argument("--target-recall", type=float, default=0.95, metavar="R",
                   help="recall@10 against exact search that IVF nprobe / HNSW efSearch are tuned to (default 0.95)")
    p.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
    p.add_argument("--json", action="store_true", help=JSON_REPORT_HELP)
    add_rules_flag(p)
    p.add_argument("--synonyms", default=None, metavar="FILE", help=SYNONYMS_HELP + " (default: keep the live version's)")
    add_catalog_flags(p)
    add_grouping_flags(p)
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("upsert", help="add or replace products of a versioned root without re-indexing the catalog")
    p.add_argument("dir", metavar="DIR", help="versioned root made by `vitrina reindex`")
    p.add_argument("catalog", metavar="CATALOG", help="the products to add or replace (same format as a catalog)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help=KEEP_HELP)
    p.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
    p.add_argument("--json", action="store_true", help=JSON_REPORT_HELP)
    add_catalog_flags(p, models=False)
    p.set_defaults(func=cmd_upsert)

    p = sub.add_parser("delete", help="remove products from a versioned root without re-indexing")
    p.add_argument("dir", metavar="DIR", help="versioned root made by `vitrina reindex`")
    p.add_argument("--ids", required=True, metavar="FILE", help="product ids to remove, one per line")
    p.add_argument("--keep", type=int, default=3, metavar="N", help=KEEP_HELP)
    p.add_argument("--json", action="store_true", help=JSON_REPORT_HELP)
    p.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_delete)
