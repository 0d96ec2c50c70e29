"""`vitrina serve`: the HTTP API and search page over an index."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from vitrina.cli.common import add_max_age_flag, add_model_flags, config_from_args
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.index import IndexManifest
from vitrina.index.versions import resolve_index_path

if TYPE_CHECKING:
    from vitrina.serving.config import ServingConfig


def cmd_serve(args: argparse.Namespace) -> int:
    from vitrina.serving.display import check_page_fields
    from vitrina.serving.server import run_server

    IndexManifest.load(resolve_index_path(args.dir))  # a clear error now, not in a worker
    if args.workers < 1:
        raise QueryError(f"--workers must be at least 1, got {args.workers}")
    config, serving = serve_configs(args)
    check_page_fields(serving, product_columns(resolve_index_path(args.dir)))
    writes = "need the API key" if serving.api_key else "are disabled (set VITRINA_API_KEY to enable them)"
    banner = (f"vitrina: serving {args.dir} on http://{args.host}:{args.port} (page /, API docs /docs); "
              f"writes and admin {writes}")
    run_server(Path(args.dir), config, serving, host=args.host, port=args.port, workers=args.workers,
               access_log=args.access_log, verbose=args.verbose, banner=banner)
    return 0


def serve_configs(args: argparse.Namespace) -> tuple[VitrinaConfig, ServingConfig]:
    """The index's settings (with the filter columns the flags name) and the server's, from the flags."""
    from vitrina.index.filters import FilterConfig
    from vitrina.serving.config import ServingConfig

    config = dataclasses.replace(
        config_from_args(args), progress=False,
        filters=FilterConfig(category=args.category_field, brand=args.brand_field, price=args.price_field),
    )
    serving = ServingConfig.with_environment_key(
        open_reads=not args.keyed_reads, max_k=args.max_k, cache_size=args.cache_size, batch_size=args.max_batch,
        public_personalisation=args.public_personalisation, rate_limit=args.rate_limit,
        key_rate_limit=args.key_rate_limit, wrong_key_limit=args.wrong_key_limit,
        rate_limit_storage=args.rate_limit_storage, cors_origins=tuple(args.cors_origin),
        header_timeout_s=args.timeout_header, keep_alive_timeout_s=args.timeout_keep_alive,
        reload_roots=tuple(args.reload_root), **page_settings(args))
    return config, serving


def page_settings(args: argparse.Namespace) -> dict:
    """The search page's ServingConfig settings from --display-fields, --facet-fields and --currency."""
    def names(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())

    facets = None if args.facet_fields is None or args.facet_fields.strip().lower() != "none" else ()
    return {"display_fields": names(args.display_fields) or (), "currency": args.currency.strip().upper(),
            "facet_fields": facets if facets is not None else names(args.facet_fields)}


def product_columns(index_dir: Path) -> list[str]:
    """The catalog columns an index holds (read from its product table's schema)."""
    import pyarrow.parquet as pq

    from vitrina.index.store import PRODUCTS_FILE

    return pq.read_schema(Path(index_dir) / PRODUCTS_FILE).names


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP API and search page over an index directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; the index loads once and the workers are forked from it, "
                        "sharing its memory and one port; each gets cores/N encoder threads unless --threads "
                        "is given, and counts rate limits alone unless --rate-limit-storage is shared)")
    p.add_argument("--keyed-reads", action="store_true", help="searches need the API key too (default: open)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    p.add_argument("--cache-size", type=int, default=10_000, help="query embeddings cached (LRU; 0: none)")
    p.add_argument("--max-batch", type=int, default=32, help="queries encoded together at most (micro-batching)")
    p.add_argument("--category-field", default=None, metavar="F",
                   help="column the category filter reads (default: category, articleType, product_type_name, ...)")
    p.add_argument("--brand-field", default=None, metavar="F", help="column the brand filter reads (default: brand)")
    p.add_argument("--price-field", default=None, metavar="F", help="column the price filters read (default: price)")
    p.add_argument("--access-log", action="store_true",
                   help="log every request (never the API key; shopper ids in /users/ID and user= show as '-')")
    p.add_argument("--public-personalisation", action="store_true",
                   help="per-shopper reads (/users/ID/recommendations, search?user=) need no API key "
                        "(default: they need it, since they reveal what a shopper bought)")
    p.add_argument("--rate-limit", default="100/second;3000/minute", metavar="LIMITS",
                   help="requests per client address without the API key, e.g. '50/second;1000/minute', or 'off' "
                        "(default %(default)s); 429 with Retry-After beyond. Health, metrics, the page and the docs "
                        "are never limited. Counted per worker process unless --rate-limit-storage is shared")
    p.add_argument("--key-rate-limit", default="1000/second", metavar="LIMITS",
                   help="requests with the API key, counted per key instead of per address (default %(default)s; 'off')")
    p.add_argument("--wrong-key-limit", default="10/minute", metavar="LIMITS",
                   help="wrong API keys per client address before every key check from it gets 429 (default %(default)s)")
    p.add_argument("--rate-limit-storage", default="memory://", metavar="URI",
                   help="where limits are counted: memory:// (default; each of --workers N counts alone, so an "
                        "address gets N times the limit) or redis://HOST:PORT shared by all (pip install limits[redis])")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin (https://shop.example.com) call the API from a browser; "
                        "repeatable; default none (no CORS headers)")
    p.add_argument("--timeout-header", type=float, default=10.0, metavar="S",
                   help="close a connection whose request headers take longer than S seconds (default %(default)s)")
    p.add_argument("--timeout-keep-alive", type=float, default=5.0, metavar="S",
                   help="close an idle keep-alive connection after S seconds (default %(default)s)")
    p.add_argument("--reload-root", action="append", default=[], metavar="DIR",
                   help="a folder POST /admin/reload may load indexes from; repeatable "
                        "(default: the folder holding DIR)")
    p.add_argument("--display-fields", default=None, metavar="F,G",
                   help="catalog columns the page's cards show, the first as the title (default: the title column, "
                        "e.g. title, name or prod_name, then the brand and colour columns)")
    p.add_argument("--facet-fields", default=None, metavar="F,G",
                   help="catalog columns the page offers as filter checkboxes with counts, or 'none' (default: the "
                        "category, brand and colour columns and other columns with few values, at most 4)")
    p.add_argument("--currency", default="USD", metavar="CODE",
                   help="ISO 4217 currency of the catalog's prices, as the page shows them (default %(default)s)")
    add_max_age_flag(p)
    add_model_flags(p, search=True)
    p.set_defaults(func=cmd_serve)
