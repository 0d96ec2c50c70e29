"""Start-up and storage footprint (issue 19): what a fresh `vitrina` process costs, before and after.

For each code checkout (`--before`, e.g. /tmp/before = `git archive 2117f89`; `--main`, e.g. /tmp/main-78649c0;
and this one), in interleaved rounds (the order flips each round, so a burst of load from elsewhere hits all
alike), each run from a copy of the checkout's package folders, with and without compiled bytecode
(`--bytecode both`, the default: "+pyc" rows were compiled once by `python -m compileall`, as `make install`
and a wheel install do, and are **what a user sees**; the plain rows compile Vitrina's sources in every
process, as this environment's PYTHONDONTWRITEBYTECODE=1 makes an editable checkout do):
  - `vitrina search INDEX "QUERY"`  (default options: hybrid, 10 hits, the table a user sees),
  - `vitrina similar INDEX ID`      (on the text+image index when given, else `--space text`),
  - `vitrina --help`,
each in a fresh process: wall-clock seconds (median and min of the rounds), CPU seconds (user + system, all
threads) and peak RSS (os.wait4). Then the bytes on disk per product of each index given, by file kind, and,
with `--build N`, of a text+image index of the first N fashion products built by each checkout.

    python benchmarks/startup.py --before /tmp/before --main /tmp/main-78649c0 --rounds 5 \
        --index OLD/hd-hybrid --after-index NEW/hd-new --image-index OLD/shop10k-old --after-image-index NEW/shop10k

(OLD: indexes as the 'before' checkout wrote them, which every checkout reads; NEW: the same catalogs as this
checkout writes them, each vector once, which 'main' and 'after' read.) About 3.5 minutes at load 12.

The load average is printed beside the figures: the machine is shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
QUERIES = ["cordless drill", "white kitchen faucet", "led light bulb", "red cotton dress", "outdoor patio chair",
           "black leather wallet", "stainless steel sink", "running shoes men", "garden hose 50 ft", "blue jeans"]


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0] if Path("/proc/loadavg").is_file() else "?"


PACKAGE = ("vitrina", "engine", "encoders", "index", "serving")  # the folders setup.cfg installs


def prepared_copy(code: Path, dest: Path, bytecode: bool) -> Path:
    """A copy of checkout `code`'s package folders without any `__pycache__`; with `bytecode`, compiled once as
    `make install` (and a wheel install) does: `python -m compileall` of the package folders."""
    for name in PACKAGE:
        shutil.copytree(code / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(code / "setup.cfg", dest / "setup.cfg")  # a source checkout: vitrina/__init__.py looks for it
    if bytecode:
        subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGE], cwd=dest, check=True)
    return dest


def run_fresh(code: Path, argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system, all threads), peak RSS in KiB) of `python -m vitrina ARGV`
    run from `code` (a `prepared_copy`) with PYTHONDONTWRITEBYTECODE=1, as this environment has it: a copy
    without bytecode compiles Vitrina's sources in every process, a compiled one reads its `.pyc` files
    (every other package reads its own, compiled when pip installed it)."""
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vitrina", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{code}: vitrina {' '.join(argv)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def first_id(index: Path) -> str:
    import pyarrow.parquet as pq

    directory = resolve(index)
    return str(pq.ParquetFile(directory / "products.parquet").read(columns=["id"]).column("id")[0].as_py())


def resolve(index: Path) -> Path:
    """A versioned root's current version, else the directory itself."""
    from vitrina.index.versions import resolve_index_path

    return resolve_index_path(index)


def spaces_of(index: Path) -> dict:
    return json.loads((resolve(index) / "manifest.json").read_text())["spaces"]


def commands(index: Path, image_index: Path | None, round_: int) -> dict[str, list[str]]:
    """The commands timed, by name; the query changes each round (a fresh process caches nothing anyway)."""
    similar_on = image_index or index
    similar = ["similar", str(similar_on), "--id", first_id(similar_on)]
    if "image" not in spaces_of(similar_on):
        similar += ["--space", "text"]
    out = {"search": ["search", str(index), QUERIES[round_ % len(QUERIES)]]}
    if image_index is not None:
        out["search (text+image index)"] = ["search", str(image_index), QUERIES[(round_ + 3) % len(QUERIES)]]
    out["similar"] = similar
    out["--help"] = ["--help"]
    return out


def time_commands(codes: dict[str, Path], indexes: dict[str, tuple[Path, Path | None]], rounds: int,
                  modes: list[bool]) -> dict:
    """{command: {label: {"wall": [...], "cpu": [...], "rss_kib": [...]}}} over interleaved rounds; with both
    bytecode modes, each label is timed with (" +pyc") and without compiled bytecode, side by side."""
    results: dict[str, dict[str, dict[str, list]]] = {}
    runs = [(label, bytecode) for label in codes for bytecode in modes]
    name_of = {run: run[0] + (" +pyc" if run[1] and len(modes) > 1 else "") for run in runs}
    with tempfile.TemporaryDirectory() as cwd:
        copies = {run: prepared_copy(codes[run[0]], Path(cwd) / f"{run[0]}-{int(run[1])}", run[1]) for run in runs}
        for run in runs:  # one untimed run of each command: page cache and the ONNX cache warm
            for argv in commands(*indexes[run[0]], 0).values():
                run_fresh(copies[run], argv, Path(cwd))
        for round_ in range(rounds):
            order = runs if round_ % 2 == 0 else runs[::-1]
            for name in commands(*indexes[runs[0][0]], round_):
                for run in order:
                    argv = commands(*indexes[run[0]], round_)[name]
                    wall, cpu, rss = run_fresh(copies[run], argv, Path(cwd))
                    label = name_of[run]
                    slot = results.setdefault(name, {}).setdefault(label, {"wall": [], "cpu": [], "rss_kib": []})
                    slot["wall"].append(round(wall, 4))
                    slot["cpu"].append(round(cpu, 4))
                    slot["rss_kib"].append(rss)
            print(f"round {round_ + 1}/{rounds} done, load average {load_average()}", file=sys.stderr, flush=True)
    return results


KINDS = (  # (kind, test on the path relative to the index directory)
    ("FAISS index files (*.faiss)", lambda p: p.name.endswith(".faiss")),
    ("vectors (*.vectors.npy)", lambda p: p.name.endswith(".vectors.npy")),
    ("rows, ordinals, groups (*.npy)", lambda p: p.suffix == ".npy" and len(p.parts) == 1),
    ("products, content (*.parquet)", lambda p: p.suffix == ".parquet"),
    ("lexical/ (BM25, vocabulary)", lambda p: p.parts[0] == "lexical"),
    ("encoders/ (ONNX models, per index)", lambda p: p.parts[0] == "encoders"),
)


def disk_usage(index: Path) -> dict:
    """Bytes of an index directory by file kind, and per product (the encoders left out: they do not grow)."""
    directory = resolve(index)
    count = json.loads((directory / "manifest.json").read_text())["product_count"]
    sizes = {kind: 0 for kind, _ in KINDS}
    sizes["other"] = 0
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(directory)
        kind = next((k for k, test in KINDS if test(relative)), "other")
        sizes[kind] += path.stat().st_size
    catalog = sum(v for k, v in sizes.items() if not k.startswith("encoders"))
    vectors = sizes[KINDS[0][0]] + sizes[KINDS[1][0]]
    return {"index": str(index), "products": count, "bytes": sizes, "bytes_without_encoders": catalog,
            "bytes_per_product": round(catalog / max(count, 1), 1),
            "vector_bytes_per_product": round(vectors / max(count, 1), 1),
            "spaces": {name: (info["dim"], info["factory"]) for name, info in spaces_of(index).items()}}


def fashion_catalog(out: Path, n: int) -> Path:
    """The first n fashion products (title, category, colour, photo) as a catalog CSV."""
    rows = []
    with (DATA / "fashion" / "products.csv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if len(rows) >= n:
                break
            rows.append({"id": r["id"], "title": r["title"], "category": r["articleType"], "colour": r["baseColour"],
                         "image": str((DATA / "fashion" / r["image"]).resolve())})
    target = out / f"fashion-first{n}.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def build_with(code: Path, catalog: Path, out: Path, extra: list[str]) -> float:
    """Build a text+image index of `catalog` with checkout `code`; the wall seconds."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-m", "vitrina", "index", str(catalog), "--out", str(out), "--image-field",
                           "image", "--image-root", str(DATA), "-q", *extra], env=env, cwd=out.parent,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{code}: vitrina index failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="a text index (e.g. benchmarks/out/hd-hybrid)")
    parser.add_argument("--image-index", type=Path, help="a text+image index (e.g. benchmarks/out/shop10k)")
    parser.add_argument("--after-index", type=Path, help="the --index catalog as this checkout writes it (searched by "
                        "'after'; --index, which both can read, by 'before'): each vector once")
    parser.add_argument("--after-image-index", type=Path, help="likewise for --image-index")
    parser.add_argument("--before", type=Path, help="another checkout to compare with, reading --index and "
                        "--image-index (e.g. /tmp/before = git archive 2117f89)")
    parser.add_argument("--main", type=Path, help="a third checkout, reading the indexes as this one does "
                        "(--after-index, --after-image-index; e.g. /tmp/main-78649c0 = git archive 78649c0)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build", type=int, default=0, metavar="N",
                        help="also build a text+image index of N fashion products with each checkout and compare sizes")
    parser.add_argument("--bytecode", choices=("off", "on", "both"), default="both",
                        help="off: every process compiles the sources (PYTHONDONTWRITEBYTECODE, as this environment); "
                             "on: compiled bytecode kept per checkout, as a wheel or `make install` has it; both "
                             "(default): each checkout timed both ways, side by side")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "startup.json")
    args = parser.parse_args()
    codes = {"before": args.before.resolve()} if args.before else {}
    if args.main:
        codes["main"] = args.main.resolve()
    codes["after"] = REPO
    started = load_average()
    image = args.image_index.resolve() if args.image_index else None
    old = (args.index.resolve(), image)
    new = ((args.after_index or args.index).resolve(), (args.after_image_index or image) and
           Path(args.after_image_index or image).resolve())
    indexes = {"before": old, "main": new, "after": new}
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.bytecode]
    timings = time_commands(codes, {label: indexes[label] for label in codes}, args.rounds, modes)
    ended = load_average()
    rows = []
    for name, by_label in timings.items():
        for label, got in by_label.items():
            base = by_label["after +pyc" if label.endswith("+pyc") else "after"]
            wall, cpu = statistics.median(got["wall"]), statistics.median(got["cpu"])
            rows.append([name, label, f"{wall:.3f}", f"{min(got['wall']):.3f}", f"{cpu:.3f}",
                         f"{max(got['rss_kib']) / 1024:.0f}", f"{wall / statistics.median(base['wall']):.2f}x",
                         f"{cpu / statistics.median(base['cpu']):.2f}x"])
    headers = ["command", "code", "median s", "min s", "CPU s (median)", "peak RSS MiB", "its wall / after's",
               "its CPU / after's"]
    print(f"\nFresh-process wall time and CPU seconds, {args.rounds} interleaved rounds (+pyc: compiled bytecode kept, "
          f"as an installed package has it: what a user sees; else every process compiles the sources); "
          f"load average {started} at the start, {ended} at the end")
    print(table(headers, rows))

    disks = [disk_usage(i) for i in dict.fromkeys((args.index, args.after_index, args.image_index, args.after_image_index))
             if i is not None]
    built = {}
    if args.build:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = fashion_catalog(Path(tmp), args.build)
            for label, code in codes.items():
                target = Path(tmp) / f"built-{label}"
                seconds = build_with(code, catalog, target, [])
                built[label] = {**disk_usage(target), "build_s": round(seconds, 1)}
    print("\nBytes on disk per product (the ONNX encoders kept in the index are left out: they do not grow)")
    rows = []
    for d in disks + [{**b, "index": f"{args.build} fashion products built by '{label}'"} for label, b in built.items()]:
        rows.append([d["index"], d["products"], ", ".join(f"{n} {dim}-d {f}" for n, (dim, f) in d["spaces"].items()),
                     d["vector_bytes_per_product"], d["bytes_per_product"],
                     f"{d['bytes']['FAISS index files (*.faiss)'] / 2**20:.1f}", f"{d['bytes']['vectors (*.vectors.npy)'] / 2**20:.1f}"])
    print(table(["index", "products", "spaces", "vector bytes/product", "all bytes/product", ".faiss MiB", ".vectors.npy MiB"],
                rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load_average": [started, ended], "rounds": args.rounds, "bytecode": args.bytecode,
                                    "codes": {k: str(v) for k, v in codes.items()}, "timings": timings,
                                    "disk": disks, "built": built}, indent=1) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
