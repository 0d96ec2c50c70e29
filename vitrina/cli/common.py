"""What every command group shares: the model, runtime and catalog flags, a VitrinaConfig made from them, query
files, printing answers, and reporting a failed command."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

from vitrina.cli.output import console, facets_table, print_json, results_table
from vitrina.encoders import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, EncoderConfig
from vitrina.encoders.config import BACKENDS, PRECISIONS, RUNTIMES
from vitrina.encoders.image_policy import ImageConfig
from vitrina.engine.api import Index
from vitrina.engine.config import ShopperConfig, VitrinaConfig
from vitrina.engine.build.groups import grouping_settings
from vitrina.engine.data.catalog import CatalogConfig, split_image_field
from vitrina.engine.errors import USER_ERRORS, MissingColumnError, QueryError
from vitrina.engine.query.search import SearchHit
from vitrina.errors import CLI, worded
from vitrina.index import IndexConfig, LexicalConfig
from vitrina.index.config import VECTOR_DTYPES

FLAGS = CLI.with_names(path="--out")  # library parameters as this CLI's flags (the index path is --out)

DEFAULT_BACKEND = EncoderConfig().backend


def config_from_args(args: argparse.Namespace) -> VitrinaConfig:
    """One VitrinaConfig from whichever of the shared flags a command has."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    text_fields = get("text_fields")
    return VitrinaConfig(
        text_model=get("text_model") or DEFAULT_TEXT_MODEL,
        image_model=get("image_model") or DEFAULT_IMAGE_MODEL,
        catalog=CatalogConfig(
            id_field=get("id_field", "id"),
            text_fields=tuple(f.strip() for f in text_fields.split(",") if f.strip()) if text_fields else None,
            image_field=get("image_field") or "image",
            image_field_required=get("image_field") is not None,
            price_field=get("price_field", "price"),
            max_images=CatalogConfig.max_images if get("max_images") is None else get("max_images"),
            **grouping_settings(get("group_field"), get("duplicate_cosine") if get("collapse_duplicates") else None),
        ),
        encoders=EncoderConfig(
            backend=get("backend") or DEFAULT_BACKEND, device=get("device"), batch_size=get("batch_size") or 32,
            precision=get("precision") or "auto", runtime=get("runtime") or "auto", threads=get("threads"),
            offline=get("offline", False),
        ),
        index=IndexConfig(factory=get("index_factory"), lexical=_lexical_config(args),
                          vector_dtype=get("vector_dtype")),
        images=ImageConfig.from_flags(get("image_root") or (), get("allow_url_network") or (),
                                      get("allow_private_urls", False)),
        shoppers=ShopperConfig.with_environment_key(max_age_days=get("events_max_age")),
        progress=not get("quiet", False),
    )


def _lexical_config(args: argparse.Namespace) -> LexicalConfig | None:
    if getattr(args, "no_lexical", False):
        return None
    stemmer = getattr(args, "stemmer", None) or "english"
    return LexicalConfig(stemmer=None if stemmer.lower() == "none" else stemmer)


def open_index(args: argparse.Namespace, one_query: str | None = None) -> Index:
    """The index at DIR (a versioned root: its current version), with the models the flags override.

    one_query: this process answers one query ("text" or "image") and exits. FAISS then searches on one
    thread (a thread pool started for one 10 ms scan cost more than it saved: 80-120 ms on a busy 2-core
    machine, issue 19), a text query's ONNX session runs on one thread unless --threads says otherwise, and
    ONNX Runtime does not pre-pack the weights (faster to start, one run barely slower)."""
    config = config_from_args(args)
    if one_query is not None:
        from vitrina.index.product_index import set_search_threads

        set_search_threads(1)
        config = dataclasses.replace(config, encoders=dataclasses.replace(config.encoders, prepack=False))
        if one_query == "text" and getattr(args, "threads", None) is None:
            config = dataclasses.replace(config, encoders=dataclasses.replace(config.encoders, threads=1))
    return Index(args.dir, config, text_model=args.text_model, image_model=args.image_model)


def k_or_default(args: argparse.Namespace, default: int) -> int:
    """-k as given (0 and negatives are rejected later with a clear message), else the mode's default."""
    return default if args.k is None else args.k


def read_query_file(path: Path, value_column: str) -> list[tuple[str, str]]:
    """(query_id, value) rows of a CSV with columns query_id and `value_column`; repeated ids are merged."""
    if not path.is_file():
        raise QueryError(f"query file not found: {path}")
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("query_id", value_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise QueryError(f"{path}: missing column {missing[0]!r} (columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            qid, value = (row.get("query_id") or "").strip(), (row.get(value_column) or "").strip()
            where = f"{path}, line {reader.line_num}"
            if not qid:
                raise QueryError(f"{where}: field 'query_id' is empty")
            if not value:
                raise QueryError(f"{where}: field {value_column!r} is empty")
            if qid in out and out[qid] != value:
                raise QueryError(f"{where}: query_id {qid!r} appears with two different {value_column} values")
            out[qid] = value
    if not out:
        raise QueryError(f"{path}: no queries")
    return list(out.items())


def emit(args: argparse.Namespace, index: Index, record: dict, title: str, hits: list[SearchHit], first: int = 1) -> None:
    """One answer: `record` as a JSON line with --json, else a results table (ranks from `first`), and the
    facets table of an answer that has facets."""
    if args.json:
        print_json(record)
        return
    catalog = index.manifest.catalog
    hide = list(split_image_field(catalog.get("image_field"))) or [""]
    console().print(results_table(title, hits, catalog.get("text_fields", []), hide, first))
    if getattr(hits, "facets", None) is not None:
        console().print(facets_table(hits))


def print_lines(lines: list[str]) -> None:
    """The lines of a report on stdout (nothing for none)."""
    if lines:
        print("\n".join(lines))


def add_model_flags(p: argparse.ArgumentParser, search: bool) -> None:
    """--text-model, --image-model, --device, --offline and the runtime flags; `search`: they must match the index."""
    what = "override the model recorded in the index (must be the same model)" if search else None
    p.add_argument("--text-model", metavar="NAME|PATH", default=None,
                   help=what or f"text encoder: packaged {DEFAULT_TEXT_MODEL} (default), a local dir, a hub name, or clip:...")
    p.add_argument("--image-model", metavar="NAME|PATH", default=None,
                   help=what or f"image encoder: {DEFAULT_IMAGE_MODEL} (default), resnet50[=PATH], clip:ARCH=TAG|PATH, clip:DIR, none")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present, else cpu)")
    p.add_argument("--offline", action="store_true", help="never contact a model hub")
    add_runtime_flags(p)


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """--backend, --precision, --runtime and --threads: how the encoders run."""
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"run encoders on ONNX Runtime (exported once, kept in the index directory) or PyTorch "
                        f"(default {DEFAULT_BACKEND})")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="ONNX weights: auto (int8 text and fp32 images on CPU, fp16 on GPU), fp32, int8 or fp16")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="what runs ONNX graphs on the CPU: auto (OpenVINO bf16 for catalog text when the openvino extra is "
                        "installed and the CPU has bf16, else onnxruntime), onnxruntime, or openvino")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per ONNX session (default: all cores)")


def add_catalog_flags(p: argparse.ArgumentParser, models: bool = True) -> None:
    """How a catalog file is read and embedded (index, reindex, upsert)."""
    p.add_argument("--id-field", default="id", metavar="F")
    p.add_argument("--text-fields", default=None, metavar="A,B", help="default: title,description where present")
    p.add_argument("--image-field", default=None, metavar="F",
                   help="default: image, when present; F1,F2 names several image columns (each may also hold a list)")
    p.add_argument("--price-field", default="price", metavar="F", help="parsed as a number when present")
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help=f"images kept per product (default {CatalogConfig.max_images}); more are reported as refused")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--image-root", action="append", default=[], metavar="DIR",
                   help="a folder local images may also come from (repeatable); by default only the catalog's "
                        "folder, and an image resolving elsewhere is refused")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="let image URLs reach loopback, link-local, private and other non-public addresses (refused by default)")
    p.add_argument("--allow-url-network", action="append", default=[], metavar="CIDR",
                   help="a non-public network image URLs may reach, e.g. a CDN on 10.20.0.0/16 (repeatable)")
    if not models:  # the live version's encoders and index types are used
        add_runtime_flags(p)
        return
    p.add_argument("--index-factory", default=None, metavar="STR", help="FAISS factory string (default by size)")
    p.add_argument("--vector-dtype", choices=VECTOR_DTYPES, default=None,
                   help="how the stored vectors are written: float32 (default; a reindex keeps the live version's) or "
                        "float16 (half the disk; top-10 overlap 0.99+ with float32 on Home Depot)")
    p.add_argument("--stemmer", default="english", metavar="LANG|none",
                   help="stemming language of the BM25 index (Snowball; default english)")
    p.add_argument("--no-lexical", action="store_true", help="build no BM25 index (search is dense only)")
    add_model_flags(p, search=False)


def add_max_age_flag(p: argparse.ArgumentParser) -> None:
    """--events-max-age: the shopper-data retention of commands that load or write behaviour vectors."""
    p.add_argument("--events-max-age", type=float, default=None, metavar="DAYS",
                   help="retention: events older than this leave the event log and the behaviour vectors "
                        "(applied when the model is snapshotted)")


def describe_os_error(args: argparse.Namespace, exc: OSError) -> str:
    """`vitrina COMMAND could not read or write its files: STRERROR (PATH)`, for an OSError that ended a command."""
    command = " ".join(str(getattr(args, name)) for name in ("command", "action", "kind") if getattr(args, name, None))
    why = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    return f"vitrina {command} could not read or write its files: {why}{where}; what was indexed before is unchanged"


def run_reporting_errors(args: argparse.Namespace) -> int:
    """Run the parsed command; a user's mistake, a file system failure or ^C is one `vitrina: ...` line and an exit code."""
    try:
        return args.func(args)
    except MissingColumnError as exc:  # the events file's columns are chosen by flags: name the flag
        print(f"vitrina: error: {worded(exc, FLAGS)}; name the column with --{exc.setting.replace('_', '-')}",
              file=sys.stderr)
        return 1
    except USER_ERRORS as exc:  # worded in flags: a parameter the message names is spelled --like-this
        print(f"vitrina: error: {worded(exc, FLAGS)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk (ENOSPC, EDQUOT), read-only (EROFS), denied (EACCES), failing (EIO)...
        print(f"vitrina: error: {describe_os_error(args, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vitrina: interrupted; nothing was changed", file=sys.stderr)
        return 130
