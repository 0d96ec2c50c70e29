"""`vitrina events add|forget` and `vitrina recommend`: the shopper feedback loop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vitrina.cli.common import add_max_age_flag, config_from_args, emit, k_or_default, open_index, print_lines
from vitrina.cli.output import hits_json, print_json
from vitrina.engine.config import RecommendConfig
from vitrina.engine.errors import QueryError
from vitrina.index import IndexManifest
from vitrina.index.versions import is_versioned_root

if TYPE_CHECKING:
    from vitrina.engine.data.events import EventWeightConfig
    from vitrina.engine.learn.feedback import EventsAdded
    from vitrina.engine.learn.shoppers import Forgotten

EVENT_KINDS = ("view", "click", "cart", "purchase")


def cmd_events_add(args: argparse.Namespace) -> int:
    from vitrina.engine.data.events import EventFieldConfig
    from vitrina.engine.learn.behaviour import BehaviourConfig

    fields = EventFieldConfig(user_field=args.user_field, product_field=args.product_field, event_field=args.event_field,
                              timestamp_field=args.timestamp_field, weight_field=args.weight_field,
                              default_event=args.default_event, basket_field=args.basket_field)
    if args.factors < 1 or args.iterations < 1:
        raise QueryError("--factors and --iterations must be at least 1")
    settings = BehaviourConfig(factors=args.factors, iterations=args.iterations)
    index = open_index(args)
    added = index.add_events(args.file, refit=args.refit, weights=event_weights(args.weights), fields=fields,
                             settings=settings)
    if args.json:
        print_json(events_added_json(added))
    else:
        print_lines(events_added_lines(added))
    if added.problems.total:
        print(f"vitrina: warning: {added.problems.summary()}", file=sys.stderr)
    return 0


def event_weights(flag: str | None) -> EventWeightConfig:
    """The event weights --weights sets (`view=1,purchase=10`), the rest at their defaults."""
    from vitrina.engine.data.events import EventWeightConfig

    if not flag:
        return EventWeightConfig()
    values = {}
    for part in flag.split(","):
        name, _, value = part.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise QueryError(f"--weights: {part!r} is not EVENT=NUMBER") from None
    unknown = set(values) - set(EVENT_KINDS)
    if unknown:
        raise QueryError(f"--weights: unknown event {min(unknown)!r}; use view, click, cart, purchase")
    return EventWeightConfig(**values)


def events_added_json(added: EventsAdded) -> dict:
    r, problems = added.report, added.problems
    return {"events": r.events, "bad_rows": problems.total, "bad_rows_by_reason": dict(problems.counts),
            "new_users": r.new_users, "users": added.users, "products_with_vectors": added.products_with_vectors,
            "refit": r.refit, "fused_refreshed": added.fused_refreshed, "notes": added.notes,
            "duplicates": added.duplicates}


def events_added_lines(added: EventsAdded) -> list[str]:
    r = added.report
    lines = [(f"Added {r.events} events ({r.new_users} new users; {r.users_updated} users and {r.items_updated} "
              f"products updated{', full refit' if r.refit else ''}); {added.users} users, "
              f"{added.products_with_vectors} products with behaviour vectors")]
    if added.duplicates:
        lines.append(f"  skipped {added.duplicates} events already applied (same event id)")
    if added.fused_refreshed:
        lines.append("  fused product vectors refreshed with the new behaviour vectors")
    return lines + [f"  note: {note}" for note in added.notes]


def cmd_events_forget(args: argparse.Namespace) -> int:
    from vitrina.engine.learn.shoppers import forget

    if not is_versioned_root(Path(args.dir)):
        IndexManifest.load(Path(args.dir))  # a clear error for something that is not an index
    gone = forget(Path(args.dir), args.user, config_from_args(args))
    if args.json:
        print_json(gone.to_json())
    elif not gone.found:
        print(f"vitrina: note: no events or behaviour vector of that user under {args.dir}; nothing to remove",
              file=sys.stderr)
    else:
        print_lines(forgotten_lines(gone))
    return 0


def forgotten_lines(gone: Forgotten) -> list[str]:
    return [(f"Forgot the user: {gone.events_removed} events removed from the log; behaviour vectors refit without "
             f"them in {', '.join(gone.versions_refit) or 'no version'}"), *[f"  note: {note}" for note in gone.notes]]


def cmd_recommend(args: argparse.Namespace) -> int:
    if (args.product is None) == (args.user is None):
        raise QueryError("recommend needs --user (products for a shopper) or --product (products bought together "
                         "with one), not both and not neither")
    if args.product is not None:
        return cmd_bought_together(args)
    settings = RecommendConfig(behaviour_weight=args.behaviour_weight, popularity_weight=args.popularity_weight,
                               half_life_days=args.half_life or None, rebuy_weight=args.rebuy_weight,
                               rebuy_half_life_days=args.rebuy_half_life or None)
    index = open_index(args)
    hits = index.recommend(args.user, k_or_default(args, 10), include_seen=args.seen, settings=settings)
    if not hits.personalised:
        print(f"vitrina: note: user {args.user!r} has no events; showing the most popular products", file=sys.stderr)
    record = {"user": args.user, "personalised": hits.personalised, "results": hits_json(hits)}
    emit(args, index, record, f"For {args.user}" + ("" if hits.personalised else " (popular)"), hits)
    return 0


def cmd_bought_together(args: argparse.Namespace) -> int:
    """`recommend --product ID`: frequently bought together (engine.query.bought_together)."""
    from vitrina.engine.query.bought_together import BoughtTogetherConfig

    index = open_index(args)
    if args.product not in index:
        raise QueryError(f"--product: no product {args.product!r} in {args.dir}")
    settings = BoughtTogetherConfig() if args.min_shoppers is None else BoughtTogetherConfig(min_shoppers=args.min_shoppers)
    hits = index.bought_together(args.product, k_or_default(args, 10), settings=settings)
    bought = sum(h.source == "co-purchase" for h in hits)
    record = {"product": args.product, "results": hits_json(hits)}
    emit(args, index, record, f"Bought with {args.product} ({bought} from co-purchases, {len(hits) - bought} similar)", hits)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`events` (add, forget), then `recommend`."""
    p = sub.add_parser("events", help="shopper events: the feedback loop behind behaviour vectors")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("add", help="add events and update the index's behaviour vectors without re-indexing")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("file", metavar="FILE", help="CSV or Parquet: user_id,product_id,event,timestamp (or a weight column)")
    q.add_argument("--refit", action="store_true", help="retrain every vector instead of folding the new events in")
    q.add_argument("--factors", type=int, default=64, metavar="N", help="behaviour vector size, at the first fit (default 64)")
    q.add_argument("--iterations", type=int, default=15, metavar="N", help="ALS iterations (default 15)")
    q.add_argument("--weights", default=None, metavar="E=W,...", help="event weights (default view=1,click=2,cart=4,purchase=8)")
    q.add_argument("--user-field", default="user_id", metavar="F")
    q.add_argument("--product-field", default="product_id", metavar="F")
    q.add_argument("--event-field", default="event", metavar="F")
    q.add_argument("--timestamp-field", default="timestamp", metavar="F")
    q.add_argument("--weight-field", default="weight", metavar="F")
    q.add_argument("--basket-field", default="basket_id", metavar="F",
                   help="optional: the order, invoice or session of each event, for `recommend --product` (default "
                        "basket_id, else a session_id column; without either: a shopper's purchases on one UTC day)")
    q.add_argument("--default-event", choices=EVENT_KINDS, default=None,
                   help="the kind of every row of a file with no event or weight column (e.g. a purchase log)")
    q.add_argument("--json", action="store_true")
    add_max_age_flag(q)
    q.set_defaults(func=cmd_events_add, text_model=None, image_model=None)

    q = actions.add_parser("forget", help="remove a shopper: their events, their vector and their part in product "
                                          "vectors, in every kept version")
    q.add_argument("dir", metavar="ROOT", help="an index root (or a plain index directory)")
    q.add_argument("--user", required=True, metavar="U", help="the shopper's id as the events named it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_events_forget, text_model=None, image_model=None)

    p = sub.add_parser("recommend", help="products for a shopper (--user), or frequently bought together with a "
                                         "product (--product)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--user", default=None, metavar="U", help="a shopper: products like what they bought, and what sells")
    p.add_argument("--product", default=None, metavar="ID",
                   help="a product: those bought in the same baskets most often (source co-purchase), filled with "
                        "similar products (source similar); not with --user")
    p.add_argument("--min-shoppers", type=int, default=None, metavar="N",
                   help="with --product: show a co-purchased pair only when N distinct shoppers bought it together "
                        "(default 2: no pair shown is one shopper's habit)")
    p.add_argument("-k", type=int, default=None, help="results (default 10)")
    defaults = RecommendConfig()
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--include-seen", dest="seen", action="store_const", const=True, default=None,
                      help="also recommend products the user already interacted with, with a re-buy score (how "
                           "often, how lately). Default: decided from the shop's events (on when at least "
                           f"{defaults.seen_share:g} of them come back to a product the shopper had a day before)")
    seen.add_argument("--exclude-seen", dest="seen", action="store_const", const=False,
                      help="never recommend products the user already interacted with")
    p.add_argument("--rebuy-weight", type=float, default=defaults.rebuy_weight, metavar="W",
                   help=f"with own products included: weight of the re-buy score (default {defaults.rebuy_weight:g})")
    p.add_argument("--rebuy-half-life", type=float, default=defaults.rebuy_half_life_days, metavar="DAYS",
                   help=f"a past purchase's re-buy score halves every DAYS since it; 0: no decay "
                        f"(default {defaults.rebuy_half_life_days:g})")
    p.add_argument("--behaviour-weight", type=float, default=defaults.behaviour_weight, metavar="W",
                   help=f"share of the ALS behaviour affinity; the rest is likeness to the shopper's products "
                        f"(default {defaults.behaviour_weight})")
    p.add_argument("--popularity-weight", type=float, default=defaults.popularity_weight, metavar="W",
                   help=f"weight of popularity, added on top (default {defaults.popularity_weight})")
    p.add_argument("--half-life", type=float, default=defaults.half_life_days, metavar="DAYS",
                   help=f"a past product counts half as much this many days before the newest event; 0: all alike "
                        f"(default {defaults.half_life_days:g})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend, text_model=None, image_model=None)
