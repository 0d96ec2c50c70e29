"""Schemathesis fuzzes every operation of the OpenAPI schema against a live server: never a 500."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from tests.serving_util import KEY, running_server, shop_catalog

pytestmark = pytest.mark.slow
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_no_operation_answers_500_whatever_it_is_sent(tmp_path):
    """Valid and invalid inputs alike (schemathesis's CLI, every phase); writes and admin get the key,
    so fuzzing reaches past the key check."""
    catalog, _ = shop_catalog(tmp_path, per_type=4)
    build_index(catalog, tmp_path / "idx", VitrinaConfig(progress=False))
    with running_server(tmp_path / "idx") as base:
        paths = httpx.get(f"{base}/openapi.json").json()["paths"]
        operations = sum(len(methods) for methods in paths.values())
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "30", "--seed", "1", "--header", f"X-API-Key: {KEY}", "--no-color"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert operations >= 12 and f"Tested: {operations}" in report  # every operation was fuzzed
    assert " failed" not in report.split("Test cases:")[1]
    shutil.rmtree(tmp_path / "idx", ignore_errors=True)
