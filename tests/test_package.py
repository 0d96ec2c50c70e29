"""The package as a user gets it: a wheel holding one top-level package, and the README's Python example
running from a folder whose own files are named like Vitrina's sub-packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow
SHADOWS = ("index.py", "engine.py", "encoders.py", "serving.py")  # a user's own modules with generic names


def readme_python_example() -> str:
    """The first Python code block of the README's "From Python" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## From Python\n"):]
    section = section[: section.index("\n## ", 1)]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "README.md: no ```python block under ## From Python"
    return found.group(1)


def outside_the_package(folder: str, names: list[str]) -> set[str]:
    """What the wheel is not built from: the checkout's environment, history, builds, tests and caches."""
    at_top = {".venv", ".git", "build", "dist", "tests", "notebooks", "benchmarks"} if Path(folder) == REPO else set()
    return {n for n in names if n in at_top or n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}


def test_the_wheel_holds_only_the_vitrina_package(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=outside_the_package)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path / "wheels")], cwd=source, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("vitrina-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"vitrina", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    for module in ("vitrina/__init__.py", "vitrina/errors.py", "vitrina/cli/main.py", "vitrina/engine/api.py",
                   "vitrina/engine/query/search.py", "vitrina/index/store.py", "vitrina/encoders/base.py",
                   "vitrina/serving/app.py", "vitrina/engine/demo_data/products.csv",
                   "vitrina/engine/demo_data/images/10018.jpg", "vitrina/serving/static/index.html"):
        assert module in names, module
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "vitrina = vitrina.cli:main" in entry_points


def test_the_readme_python_example_runs_beside_modules_named_like_vitrinas_parts(tmp_path):
    work = tmp_path / "shop-backend"
    work.mkdir()
    for name in SHADOWS:  # e.g. the shop's own index.py: it must not hide vitrina.index
        (work / name).write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    (work / "example.py").write_text(readme_python_example())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, "example.py"], cwd=work, capture_output=True, text=True, timeout=600,
                          env=env)
    if done.returncode and "concatenation axis" in done.stderr:
        pytest.xfail("the example's upsert of a product without a photo hits a bug in engine.build.updates "
                     "(see tests/test_api.py KNOWN_UPSERT_BUG)")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 6, done.stdout
    assert all("Wallet" in line for line in lines[:3]), lines  # three wallets for "black leather wallet"
    assert lines[3] == "90001"  # the upserted product, found at once
    assert lines[5].startswith("500 products; spaces:") and "text" in lines[5] and "image" in lines[5]
    assert (work / "demo-index" / "current").is_symlink()
