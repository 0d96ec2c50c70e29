"""`vitrina train` (the shared space) and `vitrina train-text` (fine-tuning the text model)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vitrina.cli.common import config_from_args, open_index, print_lines
from vitrina.cli.output import print_json
from vitrina.engine.errors import QueryError

if TYPE_CHECKING:
    from vitrina.engine.learn.finetune import TrainTextResult
    from vitrina.engine.learn.shared_space import TrainReport


def cmd_train_text(args: argparse.Namespace) -> int:
    from vitrina.encoders.text_training import TrainingConfig
    from vitrina.engine.learn.finetune import train_text

    training = TrainingConfig(epochs=args.epochs, batch_size=args.train_batch_size, learning_rate=args.learning_rate,
                              seed=args.seed)
    if training.epochs < 1 or training.batch_size < 2 or training.learning_rate <= 0:
        raise QueryError("--epochs must be >= 1, --train-batch-size >= 2 and --learning-rate > 0")
    result = train_text(args.dir, args.qrels, config_from_args(args), training, args.model_out, args.heldout,
                        args.min_positive)
    print_lines(train_text_lines(args, result))
    return 0


def train_text_lines(args: argparse.Namespace, result: TrainTextResult) -> list[str]:
    losses = ", ".join(f"{loss:.3f}" for loss in result.training.epochs)
    return [
        (f"Fine-tuned the text model on {result.train_queries} queries ({result.examples} with a relevant product in "
         f"the index); {result.heldout_queries} held out for evaluation"),
        f"  loss per epoch: {losses}; {result.training.steps} steps in {result.training.seconds:.0f} s",
        f"  model saved to {result.model_dir}; {args.dir} re-embedded with it in {result.seconds['reindex']:.0f} s",
        f"  next: vitrina eval text {args.dir} --qrels {args.qrels}   (scores the held-out queries only)",
    ]


def cmd_train(args: argparse.Namespace) -> int:
    from vitrina.engine.learn.shared_space import TrainConfig

    settings = TrainConfig(dim=args.dim, epochs=args.epochs, batch_size=args.train_batch_size,
                           learning_rate=args.learning_rate, heldout=args.heldout, seed=args.seed,
                           attributes=tuple(args.attributes.split(",")) if args.attributes else (),
                           **({} if args.colour is None else {"colour": args.colour}),
                           **({} if args.captions is None else {"captions": args.captions}))
    if settings.learning_rate <= 0:
        raise QueryError("--learning-rate must be > 0")
    report = open_index(args).train(settings=settings)
    if args.json:
        print_json(train_json(args.dir, report))
    else:
        print_lines(train_lines(args.dir, report))
    return 0


def train_json(where: str, report: TrainReport) -> dict:
    return {"dir": where, "dim": report.dim, "modalities": report.modalities, "products": report.products,
            "trained_on": report.trained_on, "heldout": report.heldout, "epochs": report.epochs_run,
            "best_epoch": report.best_epoch, "validation_recall@10": report.validation_recall_at_10,
            "losses": report.losses, "seconds": report.seconds, "spaces": ["fused", *(
                ["shared-image"] if "image" in report.modalities else []), *(["similar"] if report.attributes else [])],
            "attributes": report.attributes or None, "notes": report.notes}


def train_lines(where: str, report: TrainReport) -> list[str]:
    val = report.validation_recall_at_10
    return [
        (f"Trained the shared space of {where}: {report.dim}-d heads for {', '.join(report.modalities)} "
         f"on {report.trained_on} products ({report.heldout} held out) in {report.seconds:.0f} s"),
        (f"  loss per epoch: {', '.join(f'{x:.3f}' for x in report.losses)}; best epoch {report.best_epoch}"
         + (f" (validation recall@10 {val:.3f})" if val is not None else "")),
        *attribute_lines(report.attributes),
        *[f"  note: {note}" for note in report.notes],
        "  search and similar now use the fused space by default (--space text|image to choose)",
    ]


def attribute_lines(attributes: dict) -> list[str]:
    """What `train --attributes` learned: accuracy per column and the weights `similar` uses."""
    if not attributes:
        return []
    accuracy = ", ".join(f"{c} {a:.3f}" for c, a in attributes.get("accuracy", {}).items())
    weights = ", ".join(f"{c} {w:g}" for c, w in zip(attributes["columns"], attributes["weights"]))
    photo = ", ".join(f"{c} {w:g}" for c, w in zip(attributes["columns"], attributes["photo_weights"]))
    return [f"  attribute heads ({', '.join(attributes['inputs'])} vectors): validation accuracy {accuracy or 'n/a'}",
            f"  similar adds attribute cosines x {weights} (photo queries x {photo}), chosen on "
            f"{attributes['validation_queries']} validation products"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`train-text`, then `train` (the order of `vitrina --help`)."""
    p = sub.add_parser("train-text", help="fine-tune the index's text model on judged queries, then re-embed")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--qrels", required=True, metavar="FILE.csv", help="columns query_id,query,product_id,relevance")
    p.add_argument("--model-out", default=None, metavar="DIR", help="where to save the model (default DIR.text-model)")
    p.add_argument("--heldout", type=float, default=0.3, metavar="F",
                   help="share of queries (by a hash of query_id) never trained on (default 0.3)")
    p.add_argument("--min-positive", type=float, default=2.0, metavar="X",
                   help="judged relevance that makes a training positive (default 2.0)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-batch-size", type=int, default=64, metavar="N", help="queries per step (default 64)")
    p.add_argument("--learning-rate", type=float, default=5e-5, metavar="LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.set_defaults(func=cmd_train_text, text_model=None, image_model=None)

    p = sub.add_parser("train", help="learn the shared space (projection heads and fused vectors) of an index")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--dim", type=int, default=256, help="dimension of the shared space (default 256)")
    p.add_argument("--heldout", type=float, default=0.0, metavar="F",
                   help="share of products (by a hash of the id) never trained on, for honest evaluation (default 0)")
    p.add_argument("--train-batch-size", type=int, default=256, metavar="N", help="products per step (default 256)")
    p.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--colour", type=float, default=None, metavar="S",
                   help="weight of each photo's stored colour descriptor joined to its image vector before the image "
                        "head, relative to the image vectors' norm (default 1.0, chosen on fashion validation products; 0: image vectors only)")
    p.add_argument("--captions", type=float, default=None, metavar="S",
                   help="weight of each photo's neighbour caption (the titles of the training products whose photos "
                        "look most like it) joined to the image head's input, relative to the image vectors' norm "
                        "(default 2.0, chosen on fashion validation products; 0: none)")
    p.add_argument("--attributes", default=None, metavar="COL,COL",
                   help="catalog columns (e.g. articleType,baseColour) to learn attribute heads for: `similar` then "
                        "ranks products of the same predicted values first (weights chosen on validation products)")
    p.add_argument("--json", action="store_true", help="print the training report as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train, text_model=None, image_model=None)
