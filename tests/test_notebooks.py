"""The notebooks run top to bottom on a fresh kernel and show result images."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
def test_quickstart_notebook_executes_and_shows_images(tmp_path):
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
