"""`vitrina eval text|image|cross-modal`: relevance metrics of an index."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vitrina.cli.common import add_model_flags, k_or_default, open_index
from vitrina.cli.output import console, evaluation_table, print_json
from vitrina.engine.api import Index

if TYPE_CHECKING:
    from vitrina.engine.evaluate.evaluation import Evaluation


def cmd_eval_text(args: argparse.Namespace) -> int:
    index = open_index(args)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None  # checked before --qrels is read
    evaluation = index.evaluate_text(args.qrels, k_or_default(args, 10), min_relevance=args.min_relevance,
                                     methods=methods, exact=args.exact, include_trained=args.include_trained,
                                     space=args.space)
    return _report(args, index, evaluation)


def cmd_eval_image(args: argparse.Namespace) -> int:
    index = open_index(args)
    evaluation = index.evaluate_image(args.label_field, k_or_default(args, 10), queries=args.queries, seed=args.seed,
                                      space=args.space)
    return _report(args, index, evaluation)


def cmd_eval_cross_modal(args: argparse.Namespace) -> int:
    index = open_index(args)
    evaluation = index.evaluate_cross_modal(k_or_default(args, 10), queries=args.queries, seed=args.seed)
    return _report(args, index, evaluation)


def _report(args: argparse.Namespace, index: Index, evaluation: Evaluation) -> int:
    """Write --per-query and --report, then print the summary (JSON with --json, else a table and its notes)."""
    if args.per_query:
        evaluation.write_per_query(args.per_query)
    if getattr(args, "report", None):
        path = index.write_report(evaluation, args.report)
        print(f"vitrina: report written to {path}", file=sys.stderr)
    if args.json:
        print_json(evaluation.to_json())
    else:
        console().print(evaluation_table(evaluation))
        for note in evaluation.notes:
            print(f"  note: {note}")
    return 0


def _add_common_flags(q: argparse.ArgumentParser, report: bool = True) -> None:
    q.add_argument("dir", metavar="DIR")
    q.add_argument("-k", type=int, default=None, help="metric cutoff (default 10); recall@100 is always reported")
    q.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    if report:
        q.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report with plots")
    q.add_argument("--per-query", metavar="OUT.csv", help="write one row of metrics per query and method")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_model_flags(q, search=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure relevance: text (judged queries), image (shared labels), cross-modal")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    q = kinds.add_parser("text", help="BM25, dense and hybrid side by side on judged queries")
    _add_common_flags(q)
    q.add_argument("--qrels", required=True, metavar="FILE.csv", help="columns query_id,query,product_id,relevance")
    q.add_argument("--min-relevance", type=float, default=0.0, metavar="X",
                   help="judged products with relevance >= X count as relevant for recall, MRR, precision "
                        "and mAP (default: any relevance above 0); nDCG uses the grades themselves")
    q.add_argument("--methods", default=None, metavar="A,B", help="subset of lexical,dense,hybrid (default all)")
    q.add_argument("--exact", action="store_true",
                   help="also rank by exact search over the stored vectors, to measure what the ANN index loses")
    q.add_argument("--include-trained", action="store_true",
                   help="also score queries the text model was fine-tuned on (left out by default)")
    q.add_argument("--space", choices=("text", "fused"), default=None,
                   help="vectors of dense and hybrid search (default: fused once `vitrina train` ran, else text)")
    q.set_defaults(func=cmd_eval_text)

    q = kinds.add_parser("image", help="each catalog image queries the index; hits sharing --label-field are relevant")
    _add_common_flags(q)
    q.add_argument("--label-field", required=True, metavar="F", help="catalog field that defines relevance")
    q.add_argument("--space", choices=("image", "fused"), default="image",
                   help="image vectors (default), or fused vectors queried by each product's fused vector and "
                        "by its image alone")
    q.add_argument("--queries", type=int, default=None, metavar="N", help="a random sample of N query products")
    q.add_argument("--seed", type=int, default=0, help="seed of the --queries sample")
    q.set_defaults(func=cmd_eval_image)

    q = kinds.add_parser("cross-modal", help="each product's text queries the image vectors; its own image is relevant")
    _add_common_flags(q, report=False)
    q.add_argument("--queries", type=int, default=None, metavar="N", help="a random sample of N query products")
    q.add_argument("--seed", type=int, default=0, help="seed of the --queries sample")
    q.set_defaults(func=cmd_eval_cross_modal)
