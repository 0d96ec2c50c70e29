"""The CLI contract end to end: index, search, similar (with --where and --price filters), info, demo, and bad
input on each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitrina.index import IndexDirectory
from tests.helpers import demo_catalog, demo_rows, run_cli, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """(catalog, index dir, rows): 40 demo products indexed with the packaged default models."""
    root = tmp_path_factory.mktemp("cli")
    rows = demo_rows()
    picked = []
    for kind in ("Watches", "Sports Shoes", "Wallets", "Tshirts"):
        picked += [r for r in rows if r["articleType"] == kind][:10]
    for r in picked:
        r["price"] = f"{int(r['id']) % 97 + 5}.99"
    catalog = demo_catalog(root, picked)
    code, out, err = run_cli("index", catalog, "--out", root / "idx", "--batch-size", "16")
    assert code == 0, err
    assert "Indexed 40 products" in out and "text: 40 vectors, 384-d, Flat" in out and "image: 40 vectors, 1280-d" in out
    return catalog, root / "idx", picked


def type_of(rows: list[dict]) -> dict[str, str]:
    return {r["id"]: r["articleType"] for r in rows}


def test_search_json_shape_and_relevance(built):
    _, idx, rows = built
    code, out, _ = run_cli("search", idx, "leather wallet", "-k", "5", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["query"] == "leather wallet" and len(payload["results"]) == 5
    first = payload["results"][0]
    assert isinstance(first["id"], str) and isinstance(first["score"], float)
    assert {"title", "articleType", "baseColour", "image"} <= set(first)  # metadata comes back
    assert [r["articleType"] for r in payload["results"][:3]] == ["Wallets"] * 3
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_table_output(built):
    _, idx, _ = built
    code, out, _ = run_cli("search", idx, "sports shoes", "-k", "3")
    assert code == 0 and "Search: sports shoes" in out and "Sports Shoes" in out


def test_batch_search_prints_one_json_line_per_query(built, tmp_path):
    _, idx, rows = built
    queries = write_csv(tmp_path / "q.csv", [
        {"query_id": "q1", "query": "wrist watch"}, {"query_id": "q2", "query": "running shoes"},
        {"query_id": "q1", "query": "wrist watch"},  # repeated judgement rows collapse to one query
    ])
    code, out, err = run_cli("search", idx, "--queries", queries, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query_id"] for line in lines] == ["q1", "q2"]
    assert len(lines[0]["results"]) == 40  # k defaults to 100 in batch mode; 40 products exist
    kinds = type_of(rows)
    assert kinds[lines[0]["results"][0]["id"]] == "Watches"
    assert kinds[lines[1]["results"][0]["id"]] == "Sports Shoes"


def test_similar_by_id_and_by_image(built):
    catalog, idx, rows = built
    watch = next(r for r in rows if r["articleType"] == "Watches")
    code, out, _ = run_cli("similar", idx, "--id", watch["id"], "-k", "5", "--json")
    assert code == 0
    hits = json.loads(out)["results"]
    assert len(hits) == 5 and watch["id"] not in [h["id"] for h in hits]
    assert sum(h["articleType"] == "Watches" for h in hits) >= 4
    code, out, _ = run_cli("similar", idx, "--image", catalog.parent / watch["image"], "-k", "3", "--json")
    hits = json.loads(out)["results"]
    assert code == 0 and hits[0]["id"] == watch["id"] and hits[0]["score"] > 0.99


def test_batch_similar_reports_bad_images_without_failing(built, tmp_path):
    catalog, idx, rows = built
    shutil.copy(catalog.parent / rows[0]["image"], tmp_path / "ok.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    images = write_csv(tmp_path / "images.csv", [
        {"query_id": "a", "image": "ok.jpg"}, {"query_id": "b", "image": "broken.jpg"}, {"query_id": "c", "image": "gone.jpg"},
    ])
    code, out, err = run_cli("similar", idx, "--images", images, "-k", "4", "--json")
    assert code == 0
    lines = {line["query_id"]: line for line in map(json.loads, out.splitlines())}
    assert lines["a"]["results"][0]["id"] == rows[0]["id"] and len(lines["a"]["results"]) == 4
    assert lines["b"]["results"] == [] and "not a readable image" in lines["b"]["error"]
    assert "not found" in lines["c"]["error"] and "query c" in err


def ids_where(rows: list[dict], keep) -> set[str]:
    return {r["id"] for r in rows if keep(r)}


def result_ids(out: str) -> list[set[str]]:
    """The ids of each JSON line's results."""
    return [{hit["id"] for hit in json.loads(line)["results"]} for line in out.splitlines()]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_search_where_and_price_keep_only_matching_products(built, mode):
    _, idx, rows = built
    code, out, err = run_cli("search", idx, "black leather", "-k", "40", "--json", "--mode", mode,
                             "--where", "articleType=watches", "--where", "articleType=Wallets", "--where", "baseColour=Black")
    assert code == 0, err
    expected = ids_where(rows, lambda r: r["articleType"] in ("Watches", "Wallets") and r["baseColour"] == "Black")
    found = result_ids(out)[0]
    assert expected and found <= expected
    if mode != "lexical":  # dense and hybrid fill k from every matching product
        assert found == expected
    code, out, err = run_cli("search", idx, "shoes", "-k", "40", "--json", "--mode", mode, "--price", "20:50",
                             "--where", "year>=2011")
    assert code == 0, err
    priced = json.loads(out)["results"]
    assert priced and all(20 <= hit["price"] <= 50 and int(hit["year"]) >= 2011 for hit in priced)
    assert {h["id"] for h in priced} <= ids_where(rows, lambda r: 20 <= float(r["price"]) <= 50 and int(r["year"]) >= 2011)


def test_price_ranges_may_leave_an_end_open(built):
    _, idx, rows = built
    for flag, keep in ((":30", lambda p: p <= 30), ("60:", lambda p: p >= 60), ("30.5:60", lambda p: 30.5 <= p <= 60)):
        code, out, err = run_cli("search", idx, "watch", "-k", "40", "--json", "--mode", "dense", "--price", flag)
        assert code == 0, err
        assert result_ids(out)[0] == {r["id"] for r in rows if keep(float(r["price"]))}, flag


def test_batch_search_and_the_table_obey_filters(built, tmp_path):
    _, idx, rows = built
    queries = write_csv(tmp_path / "q.csv", [{"query_id": "q1", "query": "wrist watch"},
                                             {"query_id": "q2", "query": "running shoes"}])
    code, out, err = run_cli("search", idx, "--queries", queries, "--json", "--where", "articleType=Wallets")
    assert code == 0, err
    wallets = ids_where(rows, lambda r: r["articleType"] == "Wallets")
    assert result_ids(out) == [wallets, wallets]  # k defaults to 100 in batch mode: every wallet, nothing else
    code, out, _ = run_cli("search", idx, "running shoes", "-k", "3", "--where", "articleType=Wallets")
    assert code == 0 and "Wallets" in out and "Sports Shoes" not in out


def test_similar_by_id_image_and_images_obey_filters(built, tmp_path):
    catalog, idx, rows = built
    watch = next(r for r in rows if r["articleType"] == "Watches")
    cheap_shoes = ids_where(rows, lambda r: r["articleType"] == "Sports Shoes" and float(r["price"]) <= 60)
    flags = ("-k", "40", "--json", "--where", "articleType=Sports Shoes", "--price", ":60")
    code, out, err = run_cli("similar", idx, "--id", watch["id"], *flags)
    assert code == 0, err
    assert result_ids(out) == [cheap_shoes] and cheap_shoes
    code, out, err = run_cli("similar", idx, "--image", catalog.parent / watch["image"], *flags)
    assert code == 0, err
    assert result_ids(out) == [cheap_shoes]
    shutil.copy(catalog.parent / watch["image"], tmp_path / "watch.jpg")
    images = write_csv(tmp_path / "images.csv", [{"query_id": "a", "image": "watch.jpg"}, {"query_id": "b", "image": "gone.jpg"}])
    code, out, err = run_cli("similar", idx, "--images", images, *flags)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {h["id"] for h in lines[0]["results"]} == cheap_shoes and lines[1]["results"] == []


def test_personalised_search_obeys_filters(built, tmp_path):
    _, idx, rows = built
    shutil.copytree(idx, tmp_path / "idx")
    watches = [r["id"] for r in rows if r["articleType"] == "Watches"]
    events = write_csv(tmp_path / "events.csv", [
        {"user_id": "u1", "product_id": pid, "event": "purchase", "timestamp": f"2024-01-0{i + 1}T10:00:00Z"}
        for i, pid in enumerate(watches[:4])])
    code, _, err = run_cli("events", "add", tmp_path / "idx", events, "--factors", "4", "--iterations", "2")
    assert code == 0, err
    code, out, err = run_cli("search", tmp_path / "idx", "black", "--user", "u1", "-k", "40", "--json",
                             "--where", "articleType=Wallets")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["personalised"] is True
    assert {h["id"] for h in answer["results"]} == ids_where(rows, lambda r: r["articleType"] == "Wallets")


@pytest.mark.parametrize("flags, message", [
    (("--where", "articleType"), "--where: filter condition 'articleType' is not FIELD=VALUE"),
    (("--where", "=Watches"), "--where: filter condition '=Watches' is not FIELD=VALUE"),
    (("--where", "articleType="), "--where: filter condition 'articleType=' has no value"),
    (("--where", "colour=Black"), "--where: this catalog has no column 'colour' to filter on (columns: "),
    (("--where", "articleType>=3"), "--where: column 'articleType' does not hold numbers"),
    (("--where", "year>=many"), "--where: filter condition 'year>=many': 'many' is not a number"),
    (("--price", "cheap"), "--price: price range 'cheap' is not LOW:HIGH"),
    (("--price", "ten:20"), "--price: price range 'ten:20': 'ten' is not a number"),
    (("--price", "50:10"), "--price: price range (50, 10) starts above its end"),
])
@pytest.mark.parametrize("command", [("search", "shoes"), ("similar", "--id", "{first}"), ("search", "--queries", "{qs}")])
def test_bad_filters_name_their_flag(built, tmp_path, command, flags, message):
    _, idx, rows = built
    queries = write_csv(tmp_path / "q.csv", [{"query_id": "q1", "query": "shoes"}])
    args = [a.format(first=rows[0]["id"], qs=queries) for a in command]
    code, out, err = run_cli(args[0], idx, *args[1:], *flags)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith(f"vitrina: error: {message}"), err


def test_a_price_filter_on_a_catalog_without_prices_names_the_flag(tmp_path, tiny_bert_dir):
    catalog = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "red shoes"}, {"id": "2", "title": "blue watch"}])
    assert run_cli("index", catalog, "--out", tmp_path / "idx", "--text-model", tiny_bert_dir, "--image-model", "none",
                   "-q")[0] == 0
    code, out, err = run_cli("search", tmp_path / "idx", "shoes", "--price", "1:2")
    assert code == 1 and out == "" and err.startswith("vitrina: error: --price: this catalog has no price column")


def test_info_human_and_json(built):
    _, idx, _ = built
    code, out, _ = run_cli("info", idx)
    assert code == 0 and "products: 40" in out and "efficientnet-lite0@" in out
    manifest = json.loads(run_cli("info", idx, "--json")[1])
    assert manifest["format_version"] == 1 and manifest["spaces"]["text"]["count"] == 40


@pytest.mark.parametrize(
    "args, message",
    [
        (("search", "{idx}", "   "), "the query is empty"),
        (("search", "{idx}", "shoes", "-k", "0"), "k must be between 1 and"),
        (("search", "{idx}"), "give a QUERY or --queries"),
        (("similar", "{idx}", "--id", "no-such-product"), "unknown product id 'no-such-product'"),
        (("similar", "{idx}", "--image", "/nonexistent.jpg"), "image file not found"),
        (("search", "/nonexistent-index", "shoes"), "index directory not found"),
        (("search", "{idx}", "shoes", "--space", "image"), "only when the image model is CLIP"),
    ],
)
def test_bad_queries_get_clear_errors(built, args, message):
    _, idx, _ = built
    code, out, err = run_cli(*[a.format(idx=idx) for a in args])
    assert code == 1 and out == "" and message in err and "Traceback" not in err


def test_missing_and_corrupt_images_are_reported_and_text_still_indexed(tmp_path, tiny_bert_dir, tiny_resnet_weights):
    rows = demo_rows()[:6]
    catalog = demo_catalog(tmp_path, rows)
    (tmp_path / rows[4]["image"]).write_bytes(b"corrupt")
    (tmp_path / rows[5]["image"]).unlink()  # missing altogether
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "idx", "-q",
                             "--text-model", tiny_bert_dir, "--image-model", f"resnet18={tiny_resnet_weights}")
    assert code == 0, err
    assert f"images failed: 2 (indexed by text only). First: {rows[4]['id']}: " in out and rows[5]["id"] in out
    directory = IndexDirectory.load(tmp_path / "idx")
    assert directory.manifest.images_failed == 2
    assert directory.spaces["text"].index.ntotal == 6 and directory.spaces["image"].index.ntotal == 4
    code, _, err = run_cli("similar", tmp_path / "idx", "--id", rows[5]["id"])
    assert code == 1 and f"product '{rows[5]['id']}' has no image vector" in err


def test_bad_catalog_leaves_the_existing_index_intact(tmp_path, tiny_bert_dir):
    good = write_csv(tmp_path / "good.csv", [{"id": "1", "title": "red shoes"}, {"id": "2", "title": "blue watch"}])
    bad = write_csv(tmp_path / "bad.csv", [{"id": "1", "title": "red shoes"}, {"id": "1", "title": "dup"}])
    flags = ("--text-model", tiny_bert_dir, "--image-model", "none", "-q")
    assert run_cli("index", good, "--out", tmp_path / "idx", *flags)[0] == 0
    code, _, err = run_cli("index", bad, "--out", tmp_path / "idx", *flags)
    assert code == 1 and f"{bad}, line 3: field 'id': duplicate id '1'" in err
    code, out, _ = run_cli("search", tmp_path / "idx", "watch", "--json")
    assert code == 0 and {r["id"] for r in json.loads(out)["results"]} == {"1", "2"}


def test_searching_with_another_encoder_is_refused(tmp_path, tiny_bert_dir, tiny_resnet_weights):
    catalog = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "red shoes"}, {"id": "2", "title": "blue watch"}])
    assert run_cli("index", catalog, "--out", tmp_path / "idx", "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    other = tmp_path / "other-bert"
    shutil.copytree(tiny_bert_dir, other)
    from transformers import BertModel

    model = BertModel.from_pretrained(other)
    model.config.pooler_fc_size = 1  # a different model config -> a different encoder name
    model.save_pretrained(other)
    code, _, err = run_cli("search", tmp_path / "idx", "shoes", "--text-model", other)
    assert code == 1 and "were made by transformers:tiny-bert" in err and "Search with the same model" in err


def test_clip_text_queries_search_image_vectors(tmp_path, tiny_bert_dir, tiny_clip_dir):
    rows = demo_rows()[:8]
    catalog = demo_catalog(tmp_path, rows)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "-q",
                           "--text-model", tiny_bert_dir, "--image-model", f"clip:{tiny_clip_dir}")
    assert code == 0, err
    code, out, err = run_cli("search", tmp_path / "idx", "red shoes", "--space", "image", "-k", "8", "--json")
    assert code == 0, err
    assert {r["id"] for r in json.loads(out)["results"]} == {r["id"] for r in rows}


def test_demo_via_console_script(tmp_path):
    script = Path(sys.executable).with_name("vitrina")
    proc = subprocess.run([str(script), "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Search: leather wallet for men" in proc.stdout and "Looks like product" in proc.stdout
    assert "Wallets" in proc.stdout
    again = subprocess.run([str(script), "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Using the demo index" in again.stdout
