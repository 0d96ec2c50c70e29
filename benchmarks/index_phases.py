"""Where one `vitrina index` process spends its time: wall and CPU seconds of each stage (issue 19).

Runs `vitrina index CATALOG --out DIR -q` (plus any flags after `--`) in fresh processes. Each process starts
the command line through a small wrapper that stamps the stages of the build pipeline as they begin and end:
start-up (interpreter and imports), reading the catalog, loading the encoders, encoding, BM25, the product
table, saving, calibration and the exit (what the interpreter does after the command returns). The wrapper only
times functions; it changes nothing they do. Prints one table of medians over the rounds. With `--code`, the
rounds alternate between checkouts of Vitrina (each run with PYTHONPATH set to it), side by side.

    .venv/bin/python benchmarks/index_phases.py                        # 10,000 Home Depot titles, 3 rounds
    .venv/bin/python benchmarks/index_phases.py --code /tmp/old . --rounds 5
    .venv/bin/python benchmarks/index_phases.py --rounds 5 CATALOG.csv -- --id-field product_id
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchutil import DATA, DEFAULT_OUT, REPO, markdown_table, subset_catalog

# Runs in the measured process: wraps the stage functions, runs the CLI, prints the stamps as one JSON line.
WRAPPER = r"""
import json, os, sys, time
started = float(sys.argv[1]); stamps = []
def stamp(name):
    t = os.times(); stamps.append((name, time.time() - started, t.user + t.system))
stamp("interpreter")
import importlib
def wrap(module, attribute, label):
    owner = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    function = getattr(owner, name)
    def timed(*args, **kwargs):
        stamp(label + " start")
        try:
            return function(*args, **kwargs)
        finally:
            stamp(label + " end")
    setattr(owner, name, timed)
from vitrina.cli.main import main
stamp("imports")
for module, attribute, label in [
        ("vitrina.engine.build.indexing", "read_catalog", "read"),
        ("vitrina.engine.build.encode", "Encoders.load", "load encoders"),
        ("vitrina.engine.build.pipeline", "assemble", "assemble"),
        ("vitrina.engine.build.assemble", "LexicalIndex.build", "BM25"),
        ("vitrina.engine.build.assemble", "ProductTable.from_records", "product table"),
        ("vitrina.index.store", "IndexDirectory.save", "save"),
        ("vitrina.engine.build.indexing", "calibrate_index", "calibrate")]:
    wrap(module, attribute, label)
import atexit
atexit.register(lambda: print("STAMPS " + json.dumps(stamps), file=sys.stderr, flush=True))  # before the exit's teardown
sys.argv = ["vitrina", *sys.argv[2:]]
code = main()
stamp("command")
sys.exit(code)
"""


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("catalog", nargs="?", type=Path, help="catalog file (default: the first --limit Home Depot titles)")
    parser.add_argument("--limit", type=int, default=10_000, help="Home Depot titles when no catalog is given")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the Home Depot subset is written")
    parser.add_argument("--code", type=Path, nargs="+", default=[REPO], help="checkouts to compare (default: this one)")
    args = parser.parse_args(argv)
    if args.catalog is None:
        args.catalog = subset_catalog(DATA / "homedepot" / "products.csv", args.limit, args.out)
        extra = extra or ["--id-field", "product_id"]
    return args, extra


def one_run(code: Path, catalog: Path, extra: list[str]) -> dict[str, tuple[float, float]]:
    """stage -> (wall s, CPU s) of one fresh `vitrina index` process running the checkout `code`."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        done = subprocess.run([sys.executable, "-c", WRAPPER, str(started), "index", str(catalog), "--out",
                               str(Path(tmp) / "idx"), "-q", *extra], capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(code).resolve())})
        total = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"vitrina index failed:\n{done.stderr[-2000:]}")
    line = next(line for line in done.stderr.splitlines() if line.startswith("STAMPS "))
    stamps = json.loads(line[len("STAMPS "):])
    at = {name: (wall, cpu) for name, wall, cpu in stamps}
    phases: dict[str, tuple[float, float]] = {}
    previous = (0.0, 0.0)
    for name, wall, cpu in stamps:  # the gaps between stamps that are not a stage of their own
        if name in ("interpreter", "imports"):
            phases[name] = (wall - previous[0], cpu - previous[1])
        previous = (wall, cpu)
    for name in ("read", "load encoders", "assemble", "BM25", "product table", "save", "calibrate"):
        if f"{name} start" in at:
            (w0, c0), (w1, c1) = at[f"{name} start"], at[f"{name} end"]
            phases[name] = (w1 - w0, c1 - c0)
    load_end, load_cpu = at["load encoders end"]
    phases["encode"] = (at["assemble start"][0] - load_end, at["assemble start"][1] - load_cpu)
    phases["exit"] = (total - at["command"][0], float("nan"))
    phases["whole process"] = (total, float("nan"))
    return phases


def main(argv: Sequence[str] | None = None) -> None:
    args, extra = parse_args(argv)
    runs: dict[Path, list[dict[str, tuple[float, float]]]] = {code: [] for code in args.code}
    for number in range(1, args.rounds + 1):
        for code in args.code:
            runs[code].append(one_run(code, args.catalog, extra))
            print(f"round {number} {code}: {runs[code][-1]['whole process'][0]:.2f} s, load {os.getloadavg()[0]:.2f}",
                  flush=True)
    order = ["interpreter", "imports", "read", "load encoders", "encode", "assemble", "BM25", "product table", "save",
             "calibrate", "exit", "whole process"]
    rows = []
    for name in order:
        row = [name]
        for code in args.code:
            walls = [run[name][0] for run in runs[code] if name in run]
            cpus = [run[name][1] for run in runs[code] if name in run and run[name][1] == run[name][1]]
            row += [f"{statistics.median(walls):.3f}" if walls else "", f"{statistics.median(cpus):.3f}" if cpus else ""]
        rows.append(row)
    print(f"{args.catalog} ({' '.join(extra)}), median of {args.rounds} rounds; BM25 and product table are parts of assemble")
    print(markdown_table(["stage", *[f"{code} {what}" for code in args.code for what in ("wall s", "CPU s")]], rows))


if __name__ == "__main__":
    main()
