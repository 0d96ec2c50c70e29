"""The notebooks run top to bottom on a fresh kernel and show result images."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import SHARED

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
def test_quickstart_notebook_executes_and_shows_images(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINA_EVAL_WORK", str(tmp_path / "work"))
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = [
        out["data"]["text/html"]
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if "text/html" in out.get("data", {})
    ]
    assert len(html) >= 5  # three searches, one look-alike lookup, one upload
    assert all(h.count("data:image/jpeg;base64,/9j/") >= 6 for h in html)  # real JPEGs inline
    assert any("Wallet" in h for h in html if "black leather wallet" in h)


@pytest.mark.slow
@pytest.mark.skipif(
    not all((SHARED / name).is_dir() for name in ("homedepot", "fashion")),
    reason=f"shared datasets (homedepot/, fashion/) not found in {SHARED}",
)
def test_evaluation_notebook_executes_on_subsets_and_shows_plots(tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("VITRINA_EVAL_WORK", str(work))
    monkeypatch.delenv("VITRINA_SHARED", raising=False)  # the notebook finds ../shared/data by itself
    nb = nbformat.read(NOTEBOOKS / "evaluation.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    pngs = [out["data"]["image/png"] for out in outputs if "image/png" in out.get("data", {})]
    assert len(pngs) >= 3  # recall curve + nDCG differences, precision by articleType, look-alike thumbnails
    assert all(base64.b64decode(png).startswith(b"\x89PNG") for png in pngs)
    texts = [out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs]
    assert any(all(name in text for name in ("BM25 (lexical)", "dense", "hybrid")) for text in texts)
    report = work / "homedepot-report.html"
    assert report.is_file() and "Vitrina evaluation: text" in report.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "fashion").is_dir(), reason=f"shared dataset fashion/ not found in {SHARED}")
def test_shared_space_notebook_trains_on_a_subset_and_shows_images_and_projections(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINA_EVAL_WORK", str(tmp_path / "work"))
    monkeypatch.delenv("VITRINA_SHARED", raising=False)
    nb = nbformat.read(NOTEBOOKS / "shared_space.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    pngs = [out["data"]["image/png"] for out in outputs if "image/png" in out.get("data", {})]
    assert len(pngs) >= 3  # training curve, text -> image thumbnails, 2-D projections
    assert all(base64.b64decode(png).startswith(b"\x89PNG") for png in pngs)
    text = "".join(out.get("text", "") for out in outputs)
    found = re.search(r"text -> image recall@10: trained ([\d.]+), untrained ([\d.]+), chance ([\d.]+)", text)
    assert found, text
    trained, untrained, chance = map(float, found.groups())
    assert trained >= 0.3 and trained > 10 * max(untrained, chance)  # held-out products, 1,000 photos
