"""Helpers shared by the benchmark scripts: dataset paths, catalog subsets, index reuse, tables."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

# A script run as `python benchmarks/X.py` has benchmarks/ first on sys.path, where encoders.py (the
# encoder benchmark) would shadow the `encoders` package. Import benchutil first: it puts the project
# root first and benchmarks/ last.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
from typing import Callable, Sequence, TypeVar

from vitrina.encoders import ImageConfig
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from vitrina.index.manifest import MANIFEST_FILE

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"  # the read-only datasets beside the project
DEFAULT_OUT = REPO / "benchmarks" / "out"
# subset catalogs live under benchmarks/out but name photos in the datasets: allow that folder for images
DATA_IMAGES = ImageConfig(roots=(DATA,))
T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """run()'s result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def subset_catalog(source: Path, limit: int | None, out: Path, image_field: str | None = None) -> Path:
    """`source` itself, or with `limit` a CSV of its first `limit` rows written under `out`.

    Image paths in the subset are made absolute, so they still resolve from its new folder.
    """
    if limit is None:
        return source
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [row for _, row in zip(range(limit), reader)]
    if image_field:
        for row in rows:
            if row[image_field]:
                row[image_field] = str((source.parent / row[image_field]).resolve())
    target = out / f"{source.parent.name}-{source.stem}-first{limit}.csv"
    out.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target


def index_path(out: Path, name: str, limit: int | None) -> Path:
    """The index directory of one benchmark; subsets get their own, so --reuse never mixes them."""
    return out / (name if limit is None else f"{name}-first{limit}")


def ensure_index(catalog: Path, target: Path, config: VitrinaConfig, reuse: bool) -> None:
    """Build `catalog` into `target`, unless `reuse` is set and an index is already there."""
    if reuse and (target / MANIFEST_FILE).is_file():
        print(f"reusing the index in {target}")
        return
    print(f"indexing {catalog} into {target} ...")
    report = build_index(catalog, target, config)
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report.seconds.items())
    print(f"indexed {report.manifest.product_count} products ({stages}); {len(report.image_failures)} images failed")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def start_server(index: Path, port: int, flags: Sequence[str] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
    """`vitrina serve INDEX --port PORT FLAGS` of this venv, returned once /readyz says ready (exits if never)."""
    command = [str(Path(sys.executable).parent / "vitrina"), "serve", str(index), "--port", str(port), *flags]
    return wait_ready(subprocess.Popen(command, env=env), port)


def wait_ready(process: subprocess.Popen, port: int) -> subprocess.Popen:
    """`process`, once the server it runs says ready on /readyz (killed, and this one exits, if it never does)."""
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become ready")
