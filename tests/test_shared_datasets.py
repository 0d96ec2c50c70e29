"""The CLI contract on (subsets of) the real datasets in ../shared/data; skipped where absent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import SHARED, run_cli, write_csv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared datasets not found at {SHARED}"),
]


def head(path: Path, n: int) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [row for _, row in zip(range(n), reader)]


def test_hm_articles_keep_leading_zero_ids_and_absolute_image_paths(tmp_path):
    rows = head(SHARED / "hm" / "articles.csv", 24)
    for row in rows:
        row["image"] = str(SHARED / "hm" / row["image"])  # absolute paths work as well as relative ones
    catalog = write_csv(tmp_path / "hm.csv", rows)
    flags = ("--id-field", "article_id", "--text-fields", "prod_name,detail_desc")
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "idx", "-q", *flags)
    assert code == 0 and "image: 24 vectors" not in out and "outside the catalog's folder" in out  # not its folder
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "idx", "-q", *flags, "--image-root", SHARED / "hm")
    assert code == 0, err
    assert "Indexed 24 products" in out and "image: 24 vectors" in out
    code, out, _ = run_cli("search", tmp_path / "idx", "black tights", "-k", "3", "--json")
    results = json.loads(out)["results"]
    assert code == 0 and all(r["id"].startswith("0") and len(r["id"]) == 10 for r in results)
    assert "Tights" in results[0]["product_type_name"] or "tights" in results[0]["prod_name"].lower()
    code, out, _ = run_cli("similar", tmp_path / "idx", "--id", rows[0]["article_id"], "-k", "3", "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 3


def test_homedepot_qrels_file_works_as_a_batch_query_file(tmp_path):
    products = head(SHARED / "homedepot" / "products.csv", 400)
    ids = {p["product_id"] for p in products}
    catalog = write_csv(tmp_path / "products.csv", products)
    with (SHARED / "homedepot" / "qrels_dev.csv").open(newline="") as f:
        judged = [r for r in csv.DictReader(f) if r["product_id"] in ids]
    qrels = write_csv(tmp_path / "qrels.csv", judged)  # query_id,query,product_id,relevance
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "-q",
                           "--id-field", "product_id", "--text-fields", "title", "--image-model", "none")
    assert code == 0, err
    code, out, err = run_cli("search", tmp_path / "idx", "--queries", qrels, "-k", "10", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len({r["query_id"] for r in judged})
    # Every query gets 10 hits, or none with suggestions where it fell below the relevance floor: few real ones do
    empty = [x for x in lines if not x["results"]]
    assert all(len(x["results"]) == 10 or (not x["results"] and x["suggestions"]) for x in lines)
    assert len(empty) <= 0.05 * len(lines), [x["query_id"] for x in empty]
    # Dense retrieval finds judged products: most queries have a judged product in their top 10.
    relevant = {}
    for r in judged:
        relevant.setdefault(r["query_id"], set()).add(r["product_id"])
    found = [bool(relevant[x["query_id"]] & {h["id"] for h in x["results"]}) for x in lines]
    assert sum(found) / len(found) > 0.5


def test_fashion_image_batch_with_paths_relative_to_the_query_file(tmp_path):
    rows = head(SHARED / "fashion" / "products.csv", 30)
    for row in rows:
        row["image"] = str(SHARED / "fashion" / row["image"])
    catalog = write_csv(tmp_path / "fashion.csv", rows)
    assert run_cli("index", catalog, "--out", tmp_path / "idx", "-q", "--image-root", SHARED / "fashion")[0] == 0
    queries_dir = tmp_path / "queries"
    queries_dir.mkdir()
    for row in rows[:2]:
        (queries_dir / f"{row['id']}.jpg").write_bytes(Path(row["image"]).read_bytes())
    images = write_csv(queries_dir / "images.csv", [{"query_id": r["id"], "image": f"{r['id']}.jpg"} for r in rows[:2]])
    code, out, err = run_cli("similar", tmp_path / "idx", "--images", images, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["query_id"] for x in lines] == [rows[0]["id"], rows[1]["id"]]
    assert all(x["results"][0]["id"] == x["query_id"] and len(x["results"]) == 30 for x in lines)
