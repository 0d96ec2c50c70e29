"""`vitrina rules`: show, set or clear the merchandising rules of an index (a new version each change)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vitrina.cli.common import config_from_args, print_lines
from vitrina.cli.output import print_json
from vitrina.engine.api import Index
from vitrina.engine.errors import QueryError
from vitrina.engine.query.rules.stored import RULES_SETTING, rules_from, rules_setting

KEEP_HELP = "versions kept after publishing (default 3)"


def cmd_rules(args: argparse.Namespace) -> int:
    if args.file is not None and args.clear:
        raise QueryError("give a rules FILE or --clear, not both")
    index = Index(args.dir, config_from_args(args))
    if args.file is None and not args.clear:
        return _show(args, index)
    index.set_rules(None if args.clear else args.file, keep=args.keep)
    rules = index.rules
    count = len(rules["rules"]) if rules else 0
    record = {"index": str(args.dir), "version": index.manifest.version, "rules": count}
    if args.json:
        print_json(record)
    else:
        what = f"{_rules(count)} from {args.file}" if args.file else "no merchandising rules"
        print_lines([f"{args.dir}: now version {index.manifest.version} with {what}"])
    return 0


def _show(args: argparse.Namespace, index: Index) -> int:
    rules = index.rules
    if args.json:
        print_json(rules or {"rules": []})
    elif not rules:
        print_lines([f"{args.dir}: no merchandising rules (set them with `vitrina rules {args.dir} FILE`)"])
    else:
        print_lines([f"{args.dir}: {_rules(len(rules['rules']))} (version {index.manifest.version})"]
                    + [f"  {_summary(rule)}" for rule in rules["rules"]])
    return 0


def _rules(count: int) -> str:
    return f"{count} merchandising rule{'' if count == 1 else 's'}"


def _summary(rule: dict[str, Any]) -> str:
    """One line per rule: its id, pattern and actions."""
    pattern = "any query" if rule.get("any") else (f"query {rule['query']!r}" if "query" in rule
                                                   else f"contains {rule['contains']!r}")
    actions = []
    if "pin" in rule:
        actions.append("pin " + ", ".join(f"{p['product']}@{p['position']}" for p in rule["pin"]))
    for name in ("boost", "bury"):
        if name in rule:
            actions.append(f"{name} {json.dumps(rule[name], ensure_ascii=False)}")
    if "hide" in rule:
        actions.append(f"hide {len(rule['hide'])} product{'' if len(rule['hide']) == 1 else 's'}")
    return f"{rule['id']}: {pattern}: {'; '.join(actions)}"


def build_rules_setting(args: argparse.Namespace) -> dict[str, bytes]:
    """The rules settings file of `vitrina index`/`reindex --rules FILE` (its form checked before indexing)."""
    if getattr(args, "rules", None) is None:
        return {}
    return {RULES_SETTING: rules_setting(rules_from(Path(args.rules)))}


def check_built_rules(args: argparse.Namespace, out: str | Path) -> None:
    """After `index`/`reindex --rules FILE`: the rules checked against the built index's products and columns
    (a RulesError names what does not fit; the index stays built, answering without those parts)."""
    if getattr(args, "rules", None) is None:
        return
    from vitrina.engine.query.rules.stored import check_rules

    try:
        check_rules(Index(out, config_from_args(args))._session, rules_from(Path(args.rules)))
    except QueryError as exc:
        raise type(exc)(f"indexed into {out}, but the rules do not fit its catalog and their parts that do not "
                        f"are left out: {exc}; fix the file and run `vitrina rules {out} {args.rules}`") from None


def add_rules_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", default=None, metavar="FILE",
                   help="merchandising rules (.json, .yaml) stored with the index: pin, boost, bury or hide "
                        "products for query patterns (see `vitrina rules`)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="show, set or clear an index's merchandising rules (publishes a new version)")
    p.add_argument("dir", metavar="DIR", help="an index directory or versioned root (a directory becomes a root)")
    p.add_argument("file", metavar="FILE", nargs="?",
                   help="a rules file (.json, .yaml, .yml) to publish; without it (and --clear), print the rules")
    p.add_argument("--clear", action="store_true", help="publish a version without merchandising rules")
    p.add_argument("--keep", type=int, default=3, metavar="N", help=KEEP_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_rules)
