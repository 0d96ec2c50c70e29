"""`vitrina search`, `similar` and `info`: asking an index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from vitrina.cli.common import FLAGS, add_model_flags, emit, k_or_default, open_index, read_query_file
from vitrina.cli.output import hits_json, print_json
from vitrina.encoders import ImageLoadError
from vitrina.encoders.image_io import load_image
from vitrina.engine.api import Index
from vitrina.engine.data.catalog import resolve_image_source
from vitrina.engine.errors import QueryError
from vitrina.engine.query.filters import parse_price, parse_where
from vitrina.engine.query.compose import SORTS
from vitrina.engine.query.hits import Hits
from vitrina.engine.query.search import MODES, SPACES
from vitrina.errors import worded
from vitrina.index import IndexManifest

WHERE_HELP = ("keep products whose catalog column FIELD is VALUE (text case-insensitively); repeatable: every "
              "FIELD must match, and a FIELD given again matches any of its values; FIELD>=X and FIELD<=Y bound "
              "a column of numbers")
PRICE_HELP = "keep products priced from LOW to HIGH, inclusive; either end may be empty (10:, :50)"
T = TypeVar("T")


def cmd_search(args: argparse.Namespace) -> int:
    index = open_index(args, one_query=None if args.queries else "text")
    filters = filters_from_flags(args, index)
    if args.queries:
        return _search_batch(args, index, filters)
    if args.query is None:
        raise QueryError("give a QUERY or --queries FILE.csv")
    hits = index.search(args.query, k_or_default(args, 10), space=args.space, mode=args.mode, user=args.user,
                        **filters, **page_from_flags(args))
    title = f"Search: {args.query}" + _corrected(hits) + _fired(hits)
    if args.user is None:
        record = {"query": args.query, "results": hits_json(hits), **_facets(hits), **_rules(hits)}
        if not _said_no_results(args, args.query, hits):
            emit(args, index, _with_correction(record, hits), title, hits, args.offset + 1)
        return 0
    if not hits.personalised:
        print(f"vitrina: user {args.user!r} has no behaviour vector; results are not personalised", file=sys.stderr)
    record = {"query": args.query, "user": args.user, "personalised": hits.personalised, "results": hits_json(hits),
              **_facets(hits), **_rules(hits)}
    emit(args, index, _with_correction(record, hits), f"{title} (for {args.user})", hits, args.offset + 1)
    return 0


def _corrected(hits: Any) -> str:
    """' (showing results for: CORRECTED)' where typos were corrected, else nothing."""
    corrected = getattr(hits, "corrected_query", None)
    return "" if corrected is None else f" (showing results for: {corrected})"


def _fired(hits: Hits) -> str:
    """' (rules: A, B)' where merchandising rules acted on the hits, else nothing."""
    return f" (rules: {', '.join(hits.rules_fired)})" if hits.rules_fired else ""


def _rules(hits: Hits) -> dict[str, Any]:
    """`rules_fired` for the JSON record where merchandising rules acted; else nothing."""
    return {"rules_fired": hits.rules_fired} if hits.rules_fired else {}


def _said_no_results(args: argparse.Namespace, query: str, hits: Hits) -> bool:
    """For a table (not --json): 'No results for QUERY; try: WORDS' where the relevance floor left the answer
    empty (engine.query.calibration); whether it was said."""
    if args.json or hits or not getattr(hits, "suggestions", None):
        return False
    print(f"No results for {query!r}; try: {', '.join(hits.suggestions)}")
    return True


def _with_correction(record: dict[str, Any], hits: Any) -> dict[str, Any]:
    """The JSON record with `corrected_query` after the query, only where the query was changed (so answers to
    clean queries stay as they were)."""
    corrected = getattr(hits, "corrected_query", None)
    if corrected is None:
        return record
    keys = list(record)
    at = keys.index("query_id" if "query_id" in record else "query") + 1
    return {**{k: record[k] for k in keys[:at]}, "corrected_query": corrected, **{k: record[k] for k in keys[at:]}}


def page_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """facets=, sort= and offset= of --facets A,B, --sort and --offset (left out when not given)."""
    page: dict[str, Any] = {}
    if args.facets is not None:
        page["facets"] = _naming_flag("--facets", lambda: _facet_columns(args.facets))
    if args.sort != "relevance":
        page["sort"] = args.sort
    if args.offset:
        page["offset"] = args.offset
    return page


def _facet_columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    if not all(columns):
        raise QueryError(f"{text!r} is not a comma-separated list of catalog columns (as in articleType,brand)")
    return columns


def _facets(hits: Hits) -> dict[str, Any]:
    """`facets`, `price` and `total` for the JSON record of an answer that asked for facets, and `suggestions`
    for an answer the relevance floor left empty; else nothing."""
    out = hits.facets_json() if hits.facets is not None else {}
    return {**out, "suggestions": hits.suggestions} if getattr(hits, "suggestions", None) else out


def _search_batch(args: argparse.Namespace, index: Index, filters: dict[str, Any]) -> int:
    if args.user is not None:
        raise QueryError("--user works with one QUERY, not with --queries")
    queries = read_query_file(Path(args.queries), "query")
    results = index.search([q for _, q in queries], k_or_default(args, 100), space=args.space, mode=args.mode,
                           **filters, **page_from_flags(args))
    for (qid, query), hits in zip(queries, results):
        if _said_no_results(args, f"{qid}: {query}", hits):
            continue
        emit(args, index, _with_correction({"query_id": qid, "results": hits_json(hits), **_facets(hits),
                                            **_rules(hits)}, hits),
             f"{qid}: {query}" + _corrected(hits) + _fired(hits), hits, args.offset + 1)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    index = open_index(args, one_query=None if args.images else "image")
    filters = filters_from_flags(args, index)
    if args.images:
        return _similar_batch(args, index, filters)
    if args.id is not None:
        query, label = {"id": args.id}, f"product {args.id}"
    else:
        query, label = {"image": args.image}, args.image
    hits = index.similar(args.id, image=args.image, k=k_or_default(args, 10), space=args.space, **filters)
    emit(args, index, {"query": query, "results": hits_json(hits)}, f"Looks like {label}", hits)
    return 0


def _similar_batch(args: argparse.Namespace, index: Index, filters: dict[str, Any]) -> int:
    path = Path(args.images)
    loaded: list[tuple[str, object]] = []
    for qid, image in read_query_file(path, "image"):
        try:
            loaded.append((qid, load_image(resolve_image_source(image, path.resolve().parent))))
        except ImageLoadError as exc:
            loaded.append((qid, exc))
    good = [(qid, img) for qid, img in loaded if not isinstance(img, ImageLoadError)]
    answers = index.similar(image=[img for _, img in good], k=k_or_default(args, 100), space=args.space,
                            **filters) if good else []
    results = dict(zip([qid for qid, _ in good], answers))
    for qid, img in loaded:
        if isinstance(img, ImageLoadError):
            print(f"vitrina: warning: query {qid}: {img}", file=sys.stderr)
            if args.json:
                print_json({"query_id": qid, "results": [], "error": str(img)})
        else:
            emit(args, index, {"query_id": qid, "results": hits_json(results[qid])}, qid, results[qid])
    return 0


def filters_from_flags(args: argparse.Namespace, index: Index) -> dict[str, Any]:
    """The where= and price= of --where and --price, checked against the index's catalog; a problem names its flag."""
    filters: dict[str, Any] = {}
    if args.where:
        filters["where"] = _naming_flag("--where", lambda: parse_where(args.where))
        _naming_flag("--where", lambda: index.check_filters(where=filters["where"]))
    if args.price is not None:
        filters["price"] = _naming_flag("--price", lambda: parse_price(args.price))
        _naming_flag("--price", lambda: index.check_filters(price=filters["price"]))
    return filters


def _naming_flag(flag: str, call: Callable[[], T]) -> T:
    """call(), its QueryError prefixed with the flag whose value it was about."""
    try:
        return call()
    except QueryError as exc:
        raise QueryError(f"{flag}: {worded(exc, FLAGS)}") from None


def cmd_info(args: argparse.Namespace) -> int:
    manifest = Index.manifest_of(args.dir)
    print(manifest.to_json() if args.json else "\n".join(info_lines(args.dir, manifest)))
    return 0


def info_lines(where: str, manifest: IndexManifest) -> list[str]:
    """The manifest of the index at `where`, for people."""
    catalog = manifest.catalog
    lines = [f"Vitrina index {where} (format {manifest.format_version}, built {manifest.created_at})",
             f"  products: {manifest.product_count} from {catalog.get('source')}",
             (f"  fields: id={catalog.get('id_field')} text={','.join(catalog.get('text_fields', []))} "
              f"image={catalog.get('image_field')}")]
    for name, info in manifest.spaces.items():
        lines.append(f"  {name}: {info.count} vectors, {info.dim}-d, index {info.factory}, encoder {info.encoder}")
        lines.append(f"        model spec: {info.model}" + (f"; embedded with {info.runtime}" if info.runtime else ""))
    kept = sorted(p.name for p in (Path(where) / "encoders").glob("*") if p.is_dir() and not p.name.startswith("."))
    if kept:
        lines.append(f"  ONNX encoders kept: {', '.join(kept)}")
    if manifest.images_failed:
        lines.append(f"  images failed at index time: {manifest.images_failed}")
    return lines


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`search` and `similar` (`info` comes later in the command list: add_info_parser)."""
    p = sub.add_parser("search", help="text search")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("query", metavar="QUERY", nargs="?")
    p.add_argument("--queries", metavar="FILE.csv", help="batch: CSV with columns query_id,query")
    p.add_argument("-k", type=int, default=None, help="results per query (default 10; 100 in batch mode)")
    p.add_argument("--space", choices=SPACES, default=None,
                   help="fused (default once `vitrina train` ran), text, or image (images in the shared space "
                        "once trained, else through a CLIP text tower)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="lexical (BM25), dense (vectors) or hybrid (both fused; the default when the index has BM25)")
    p.add_argument("--user", default=None, metavar="U",
                   help="personalise: blend the shopper's behaviour vector into the ranking (from `events add`)")
    _add_filter_flags(p)
    p.add_argument("--facets", default=None, metavar="COLUMN,...",
                   help="count the values of these catalog columns (and the price range) over the matched set: "
                        "all lexical matches plus the dense candidates above the relevance floor; "
                        "JSON gains facets, price and total")
    p.add_argument("--sort", choices=SORTS, default="relevance",
                   help="relevance (default), or the matched set by price: price_asc, price_desc (no price: last)")
    p.add_argument("--offset", type=int, default=0, metavar="N",
                   help="skip the first N results, for paging (N + k at most 10000)")
    p.add_argument("--json", action="store_true", help="JSON output (one object per line in batch mode)")
    add_model_flags(p, search=True)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("similar", help="visually similar products")
    p.add_argument("dir", metavar="DIR")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--image", metavar="PATH", help="an image file or URL")
    group.add_argument("--id", metavar="PRODUCT_ID", help="a product in the index")
    group.add_argument("--images", metavar="FILE.csv", help="batch: CSV with columns query_id,image (paths relative to FILE)")
    p.add_argument("-k", type=int, default=None, help="results per query (default 10; 100 in batch mode)")
    p.add_argument("--space", choices=SPACES, default=None,
                   help="fused (default once `vitrina train` ran: looks, words and shoppers), image (looks alike), "
                        "or text (described alike; --id only)")
    _add_filter_flags(p)
    p.add_argument("--json", action="store_true")
    add_model_flags(p, search=True)
    p.set_defaults(func=cmd_similar)


def _add_filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE", help=WHERE_HELP)
    p.add_argument("--price", default=None, metavar="LOW:HIGH", help=PRICE_HELP)


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe an index directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_info)
