"""Plain test helpers (no fixtures): paths, demo catalogs, CSV writing, and an in-process CLI runner."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

from vitrina.cli.main import main as cli_main

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "engine" / "demo_data"
SHARED = REPO.parent / "shared" / "data"

WORDS = (
    "red blue black white green shirt shoes boots dress watch wallet leather running women men kids "
    "summer winter waterproof hiking bag cotton denim jeans steel strap sports casual"
).split()


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0].keys())
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def demo_rows() -> list[dict]:
    with (DEMO_DATA / "products.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def demo_catalog(dest: Path, rows: list[dict]) -> Path:
    """A catalog of demo `rows` at dest/products.csv, with their images copied beside it."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(DEMO_DATA / r["image"], dest / r["image"])
    return write_csv(dest / "products.csv", rows)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `vitrina ARGS` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def encode_in_fresh_process(model_dir: Path, config: str, watched: tuple[str, ...],
                            texts: tuple[str, ...] = ("red shoes", "a blue shirt")) -> tuple[dict, list, list[str]]:
    """Load a text encoder in a new Python process and embed `texts`: ({"name", "precision"} of the encoder, its
    vectors, which of the `watched` modules that process imported). `config`: an EncoderConfig expression
    (`Path` is in scope)."""
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from vitrina.encoders import EncoderConfig, load_text_encoder\n"
        f"e = load_text_encoder({str(model_dir)!r}, {config})\n"
        f"v = e.encode({list(texts)!r})\n"
        f"print(json.dumps([{{'name': e.name, 'precision': e.precision}}, v.tolist(), "
        f"sorted(m for m in {tuple(watched)!r} if m in sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    about, vectors, imported = json.loads(done.stdout.strip().splitlines()[-1])
    return about, vectors, imported
