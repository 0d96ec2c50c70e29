"""Each start-up lever of issue 19 (session 3) alone, A/B in fresh processes, interleaved rounds:

  - onnx:    the int8 query graph's ONNX Runtime session, optimised at load (before) vs loaded from the cached
             optimised graph (after; the size + CRC-32 check included);
  - spaces:  loading an index and running one text query's dense search: every exact space's FAISS index built
             at load (before) vs deferred (after: the query answered by a matrix product over the stored vectors,
             no FAISS copy; on a text + image index the image and colour spaces are never built);
  - cli:     `vitrina search --help` (the CLI's module-level imports and its parser: what every command pays)
             from a checkout before vs this one, compiling the sources each time and compiled once
             (`startup.prepared_copy`, as `make install`).

CPU seconds (process time of the step, or user + system of the whole process for imports) and wall seconds,
median of the rounds; the load average beside them (the machine is shared).

    python benchmarks/startup_levers.py --index OUT/hd-new --image-index OUT/shop10k --before /tmp/main-78649c0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

ONNX = """
import json, sys, time
from pathlib import Path
import onnxruntime as ort
from vitrina.encoders.files import read_checksums
from vitrina.encoders.onnx_optimised import optimised_session
graph, cache, cached = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
recorded = (read_checksums(graph.parent) or {}).get(graph.name)  # as encoders.onnx_runtime passes it
recorded = recorded and f"{recorded}|{graph.stat().st_size}"
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1; o.log_severity_level = 3
o.add_session_config_entry("session.intra_op.allow_spinning", "0")
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
t, c = time.perf_counter(), time.process_time()
s = optimised_session(graph, o, ["CPUExecutionProvider"], cache, recorded) if cached else ort.InferenceSession(str(graph), o, providers=["CPUExecutionProvider"])
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""

SPACES = """
import json, sys, time
import numpy as np
from vitrina.index import IndexDirectory
import faiss; faiss.omp_set_num_threads(1)
path, eager = sys.argv[1], sys.argv[2] == "1"
t, c = time.perf_counter(), time.process_time()
d = IndexDirectory.load(path)
if eager:
    for space in d.spaces.values():
        space.index.ensure_built()
text = d.spaces["text"]
text.search(np.asarray(text.vectors[:1], dtype=np.float32), 10)
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def in_process(code: str, args: list[str], env_path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(env_path)})
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu


def whole_process(code: Path) -> tuple[float, float]:
    """(wall, user + system CPU) of a fresh `vitrina search --help` from `code` (startup.prepared_copy): the CLI's
    module-level imports and its parser, what every command pays before it starts."""
    import time

    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vitrina", "search", "--help"], env=env, cwd=code.parent,
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{code}: vitrina search --help failed")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def ab(rounds: int, a, b) -> dict:
    """Interleaved A/B rounds (order flipped each round): medians of wall and CPU of each."""
    got = {"before": [], "after": []}
    for r in range(rounds):
        for label, fn in ((("before", a), ("after", b)) if r % 2 == 0 else (("after", b), ("before", a))):
            got[label].append(fn())
    return {label: {"wall": round(statistics.median(w for w, _ in v), 4), "cpu": round(statistics.median(c for _, c in v), 4)}
            for label, v in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="an index whose text encoder is kept (its int8 graph)")
    parser.add_argument("--image-index", type=Path, help="a text + image index (exact spaces) for the spaces lever")
    parser.add_argument("--before", type=Path, help="a checkout before (imports lever), e.g. /tmp/main-78649c0")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "startup_levers.json")
    args = parser.parse_args()
    results: dict = {"load_average": [load_average()]}
    graph = args.index.resolve() / "encoders" / "text" / "model.int8.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        in_process(ONNX, [str(graph), tmp, "1"], REPO)  # the cached graph saved once, as by a user's first search
        results["onnx session (int8 query graph)"] = ab(args.rounds, lambda: in_process(ONNX, [str(graph), tmp, "0"], REPO),
                                                         lambda: in_process(ONNX, [str(graph), tmp, "1"], REPO))
    results["load_average"].append(load_average())
    for label, index in (("text index", args.index), ("text+image index", args.image_index)):
        if index is not None:
            path = str(index.resolve())
            results[f"load + one dense text search, {label}"] = ab(
                args.rounds, lambda: in_process(SPACES, [path, "1"], REPO), lambda: in_process(SPACES, [path, "0"], REPO))
            results["load_average"].append(load_average())
    if args.before:
        sys.path.insert(0, str(HERE))
        from startup import prepared_copy

        with tempfile.TemporaryDirectory() as tmp:
            for bytecode in (False, True):
                before = prepared_copy(args.before.resolve(), Path(tmp) / f"before-{int(bytecode)}", bytecode)
                after = prepared_copy(REPO, Path(tmp) / f"after-{int(bytecode)}", bytecode)
                results[f"`vitrina search --help` (CLI imports + parser), {'bytecode compiled once' if bytecode else 'compiling the sources'}"] = ab(
                    args.rounds, lambda: whole_process(before), lambda: whole_process(after))
                results["load_average"].append(load_average())
    print(f"load average {' -> '.join(results['load_average'])}; medians of {args.rounds} interleaved rounds")
    print("| lever | before wall s | before CPU s | after wall s | after CPU s | CPU saved s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if name != "load_average":
            print(f"| {name} | {r['before']['wall']:.3f} | {r['before']['cpu']:.3f} | {r['after']['wall']:.3f} | "
                  f"{r['after']['cpu']:.3f} | {r['before']['cpu'] - r['after']['cpu']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
