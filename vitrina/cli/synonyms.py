"""`vitrina synonyms DIR FILE`: store a synonyms file with an index (a new version of its root), `--clear` to drop
it, or show the synonyms stored (engine.build.settings, index.synonyms)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitrina.cli.common import print_lines
from vitrina.cli.output import print_json
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import ArgumentError
from vitrina.index.errors import IndexStoreError
from vitrina.index.manifest import MANIFEST_FILE
from vitrina.index.settings import read_setting
from vitrina.index.synonyms import SYNONYMS_FILE, Synonyms
from vitrina.index.versions import resolve_index_path

SYNONYMS_HELP = ("a synonyms file in Solr's format (`tv, television` equivalences, `laptop => notebook` rewrites), "
                 "stored with the index and applied to both legs of text search")


def cmd_synonyms(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if args.file and args.clear:
        raise ArgumentError("give a synonyms FILE or --clear, not both")
    if not args.file and not args.clear:  # show what is stored
        if not (resolve_index_path(root) / MANIFEST_FILE).is_file():
            raise IndexStoreError(f"{root} is not a Vitrina index (no {MANIFEST_FILE} and no current version)")
        data = read_setting(root, SYNONYMS_FILE)
        if args.json:
            print_json({"dir": str(root), "synonyms": None if data is None else data.decode("utf-8")})
        else:
            print(f"{root}: no synonyms" if data is None else data.decode("utf-8"), end="" if data else "\n")
        return 0
    from vitrina.engine.build.settings import publish_setting

    synonyms = Synonyms.read(args.file) if args.file else None
    version_dir = publish_setting(root, SYNONYMS_FILE, None if synonyms is None else synonyms.to_bytes(),
                                  VitrinaConfig(progress=False), keep=args.keep)
    rules = 0 if synonyms is None else len(synonyms.rules)
    if args.json:
        print_json({"dir": str(root), "version": version_dir.name, "path": str(version_dir), "rules": rules})
    else:
        what = "synonyms cleared" if synonyms is None else f"{rules} synonym rules from {args.file}"
        print_lines([f"{root}: now version {version_dir.name} with {what}",
                     "  a running server picks it up on POST /admin/reload"])
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synonyms", help="store a synonyms file with an index (publishes a new version), or show it")
    p.add_argument("dir", metavar="DIR", help="index directory or versioned root (a plain directory becomes a root)")
    p.add_argument("file", metavar="FILE", nargs="?", default=None, help=SYNONYMS_HELP + "; none: show the stored file")
    p.add_argument("--clear", action="store_true", help="remove the stored synonyms (publishes a new version)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="versions kept after publishing (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_synonyms)
