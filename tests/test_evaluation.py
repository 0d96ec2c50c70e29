"""`vitrina eval` (text, image, cross-modal), `search --mode`, and `vitrina train-text`, on tiny models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.engine.evaluate.evaluation import DEPTH, evaluate_text, read_qrels, score_query
from vitrina.engine.learn.finetune import heldout_bucket
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexManifest
from tests.helpers import demo_catalog, demo_rows, run_cli, write_csv

TYPES = ("Watches", "Wallets", "Sports Shoes", "Handbags")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("eval-catalog")
    rows = demo_rows()
    picked = []
    for kind in TYPES:
        picked += [r for r in rows if r["articleType"] == kind][:6]
    return demo_catalog(root, picked), picked


@pytest.fixture(scope="module")
def index(catalog, tmp_path_factory, tiny_bert_dir, tiny_resnet_weights) -> Path:
    out = tmp_path_factory.mktemp("eval-index") / "idx"
    code, _, err = run_cli("index", catalog[0], "--out", out, "-q", "--text-model", tiny_bert_dir,
                           "--image-model", f"resnet18={tiny_resnet_weights}")
    assert code == 0, err
    return out


def make_qrels(path: Path, rows: list[dict], count: int | None = None) -> Path:
    """Each product's title is a query; the product is relevant (3), another of its type less so (1)."""
    by_type: dict[str, list[dict]] = {}
    for r in rows:
        by_type.setdefault(r["articleType"], []).append(r)
    out = []
    for i, r in enumerate(rows[:count]):
        other = next(o for o in by_type[r["articleType"]] if o["id"] != r["id"])
        out.append({"query_id": f"q{i:03d}", "query": r["title"], "product_id": r["id"], "relevance": 3})
        out.append({"query_id": f"q{i:03d}", "query": r["title"], "product_id": other["id"], "relevance": 1})
    return write_csv(path, out)


class TestQrels:
    def test_reads_graded_judgements(self, tmp_path, catalog):
        qrels = read_qrels(make_qrels(tmp_path / "q.csv", catalog[1], 3))
        assert len(qrels.queries) == 3 and all(len(j) == 2 for j in qrels.judgements.values())
        assert sorted(next(iter(qrels.judgements.values())).values()) == [1.0, 3.0]

    @pytest.mark.parametrize("body, message", [
        ("query_id,query,product_id\nq1,a,1\n", "missing column 'relevance'"),
        ("query_id,query,product_id,relevance\nq1,,1,2\n", "line 2: field 'query' is empty"),
        ("query_id,query,product_id,relevance\nq1,a,1,high\n", "line 2: field 'relevance' is 'high', not a number"),
        ("query_id,query,product_id,relevance\nq1,a,1,-1\n", "line 2: field 'relevance' must be"),
        ("query_id,query,product_id,relevance\nq1,a,1,2\nq1,b,2,2\n", "line 3: query_id 'q1' appears with two"),
        ("query_id,query,product_id,relevance\nq1,a,1,2\nq1,a,1,3\n", "line 3: product '1' is judged twice"),
        ("query_id,query,product_id,relevance\n", "no judged queries"),
    ])
    def test_bad_files_name_the_line_and_field(self, tmp_path, body, message):
        path = tmp_path / "bad.csv"
        path.write_text(body)
        with pytest.raises(QueryError, match=message.replace("(", r"\(")):
            read_qrels(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(QueryError, match="qrels file not found"):
            read_qrels(tmp_path / "none.csv")


class TestSearchModes:
    def test_modes_differ_and_hybrid_is_the_default(self, index, catalog):
        session = SearchSession(index, VitrinaConfig())
        title = catalog[1][0]["title"]
        lexical = session.search([title], 5, mode="lexical")[0]
        assert lexical[0].id == catalog[1][0]["id"]  # BM25 finds the exact title first
        assert session.default_mode() == "hybrid"
        assert [h.id for h in session.search([title], 5)[0]] == [h.id for h in session.search([title], 5, mode="hybrid")[0]]

    def test_cli_mode_flag(self, index, catalog):
        code, out, _ = run_cli("search", index, catalog[1][3]["title"], "--mode", "lexical", "-k", "3", "--json")
        assert code == 0 and json.loads(out)["results"][0]["id"] == catalog[1][3]["id"]

    def test_lexical_mode_without_bm25_is_a_clear_error(self, catalog, tmp_path, tiny_bert_dir):
        out = tmp_path / "dense-only"
        assert run_cli("index", catalog[0], "--out", out, "-q", "--no-lexical", "--text-model", tiny_bert_dir,
                       "--image-model", "none")[0] == 0
        assert IndexManifest.load(out).lexical is None
        code, _, err = run_cli("search", out, "wallet", "--mode", "lexical")
        assert code == 1 and "needs a lexical index" in err
        assert run_cli("search", out, "wallet")[0] == 0  # the default falls back to dense


class TestEvalText:
    def test_json_has_every_method_and_metric(self, index, catalog, tmp_path):
        qrels = make_qrels(tmp_path / "q.csv", catalog[1])
        per_query = tmp_path / "per_query.csv"
        code, out, err = run_cli("eval", "text", index, "--qrels", qrels, "--json", "-q", "--per-query", per_query,
                                 "--exact")
        assert code == 0, err
        payload = json.loads(out)
        assert payload["kind"] == "text" and payload["queries"] == len(catalog[1]) and payload["k"] == 10
        assert set(payload["methods"]) == {"lexical", "dense", "hybrid", "dense-exact"}
        metrics = {"ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10", "map@10"}
        for values in payload["methods"].values():
            assert metrics <= set(values) and all(0.0 <= values[m] <= 1.0 for m in metrics)
        # every query's title is in the catalog verbatim: BM25 puts that product first
        assert payload["methods"]["lexical"]["mrr@10"] == pytest.approx(1.0)
        # a Flat index is exact search
        assert payload["methods"]["dense"]["ndcg@10"] == payload["methods"]["dense-exact"]["ndcg@10"]
        with per_query.open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 4 * len(catalog[1]) and {"query_id", "method", "ndcg@10"} <= set(rows[0])

    def test_per_query_rows_match_the_rankings(self, index, catalog, tmp_path):
        session = SearchSession(index, VitrinaConfig(progress=False))
        qrels = read_qrels(make_qrels(tmp_path / "q.csv", catalog[1], 5))
        evaluation = evaluate_text(session, qrels, k=3, min_relevance=2.0, progress=False)
        for method in evaluation.methods:
            for qid, query in qrels.queries.items():
                ranked = [h.id for h in session.search([query], DEPTH, mode=method.name)[0]]
                assert method.rankings[qid] == ranked
                assert method.per_query[qid] == score_query(ranked, qrels.judgements[qid], 3, 2.0, evaluation.metrics)

    def test_table_output_and_report(self, index, catalog, tmp_path):
        qrels = make_qrels(tmp_path / "q.csv", catalog[1], 6)
        code, out, err = run_cli("eval", "text", index, "--qrels", qrels, "-q", "--report", tmp_path / "r.html")
        assert code == 0, err
        assert "BM25 (lexical)" in out and "hybrid" in out and "ndcg@10" in out
        assert (tmp_path / "r.html").stat().st_size > 10_000 and "report written" in err

    def test_unknown_products_are_noted(self, index, tmp_path):
        qrels = write_csv(tmp_path / "q.csv", [{"query_id": "q1", "query": "watch", "product_id": "nope", "relevance": 2}])
        code, out, _ = run_cli("eval", "text", index, "--qrels", qrels, "--json", "-q")
        payload = json.loads(out)
        assert code == 0 and payload["methods"]["hybrid"]["ndcg@10"] == 0.0
        assert any("not in the index" in n for n in payload["notes"])

    def test_bad_method_and_k(self, index, catalog, tmp_path):
        qrels = make_qrels(tmp_path / "q.csv", catalog[1], 2)
        assert "unknown method 'bm25'" in run_cli("eval", "text", index, "--qrels", qrels, "--methods", "bm25")[2]
        assert "k must be between" in run_cli("eval", "text", index, "--qrels", qrels, "-k", "0", "-q")[2]


class TestEvalImage:
    def test_label_field_relevance(self, index, catalog):
        code, out, err = run_cli("eval", "image", index, "--label-field", "articleType", "--json", "-q", "-k", "5")
        assert code == 0, err
        payload = json.loads(out)
        assert payload["kind"] == "image" and payload["queries"] == len(catalog[1])
        values = payload["methods"]["dense"]
        # 6 products per type, the query excluded: at most 5 relevant, so recall@100 finds all of them
        assert values["recall@100"] == pytest.approx(1.0)
        assert 0.0 < values["precision@5"] <= 1.0

    def test_query_sample(self, index):
        code, out, _ = run_cli("eval", "image", index, "--label-field", "baseColour", "--queries", "7", "--json", "-q")
        assert code == 0 and json.loads(out)["queries"] == 7

    def test_unknown_label_field(self, index):
        code, _, err = run_cli("eval", "image", index, "--label-field", "colour")
        assert code == 1 and "'colour' is not a catalog field" in err and "baseColour" in err

    def test_cross_modal_needs_a_clip_image_model(self, index):
        code, _, err = run_cli("eval", "cross-modal", index)
        assert code == 1 and "only when the image model is CLIP" in err


def test_cross_modal_with_clip(catalog, tmp_path, tiny_bert_dir, tiny_clip_dir):
    out = tmp_path / "clip-idx"
    assert run_cli("index", catalog[0], "--out", out, "-q", "--text-model", tiny_bert_dir,
                   "--image-model", f"clip:{tiny_clip_dir}")[0] == 0
    code, stdout, err = run_cli("eval", "cross-modal", out, "--json", "-q", "-k", "5")
    assert code == 0, err
    payload = json.loads(stdout)
    values = payload["methods"]["dense"]
    assert payload["queries"] == len(catalog[1]) and {"recall@1", "recall@5", "mrr@5"} <= set(values)
    # one relevant item per query: recall@100 over 24 images finds it always
    assert values["recall@100"] == pytest.approx(1.0)
    assert values["recall@1"] <= values["recall@5"]


def test_train_text_fine_tunes_holds_out_and_reindexes(catalog, tmp_path, tiny_bert_dir):
    idx = tmp_path / "idx"
    assert run_cli("index", catalog[0], "--out", idx, "-q", "--text-model", tiny_bert_dir, "--image-model", "none")[0] == 0
    before = IndexManifest.load(idx).spaces["text"]
    qrels = make_qrels(tmp_path / "q.csv", catalog[1])
    code, out, err = run_cli("train-text", idx, "--qrels", qrels, "--epochs", "4", "--train-batch-size", "4",
                             "--learning-rate", "1e-3", "--heldout", "0.3", "-q")
    assert code == 0, err
    model_dir = tmp_path / "idx.text-model"
    record = json.loads((model_dir / "vitrina_training.json").read_text())
    held = {q for q in read_qrels(qrels).queries if heldout_bucket(q) < 0.3}
    assert held and not held & set(record["train_query_ids"])
    assert record["epoch_losses"][-1] < record["epoch_losses"][0]  # it learned something
    after = IndexManifest.load(idx).spaces["text"]
    assert after.model == str(model_dir.resolve()) and after.encoder != before.encoder and after.count == before.count
    # the held-out queries alone are scored, with a note saying so
    code, out, _ = run_cli("eval", "text", idx, "--qrels", qrels, "--json", "-q")
    payload = json.loads(out)
    assert code == 0 and payload["queries"] == len(held)
    assert any("trained on were left out" in n for n in payload["notes"])
    code, out, _ = run_cli("eval", "text", idx, "--qrels", qrels, "--json", "-q", "--include-trained")
    assert json.loads(out)["queries"] == len(catalog[1])
    assert run_cli("search", idx, "leather wallet", "--mode", "dense")[0] == 0


def test_train_text_refuses_an_unknown_output_directory(catalog, tmp_path, tiny_bert_dir):
    idx = tmp_path / "idx"
    assert run_cli("index", catalog[0], "--out", idx, "-q", "--text-model", tiny_bert_dir, "--image-model", "none")[0] == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    qrels = make_qrels(tmp_path / "q.csv", catalog[1])
    before = IndexManifest.load(idx).to_json()
    code, _, err = run_cli("train-text", idx, "--qrels", qrels, "--epochs", "1", "--model-out", tmp_path / "mine", "-q")
    assert code == 1 and "refusing to replace it" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert IndexManifest.load(idx).to_json() == before  # the index is untouched


def test_train_text_keeps_the_shops_settings_files_and_groups(catalog, tmp_path, tiny_bert_dir):
    idx = tmp_path / "idx"
    synonyms = tmp_path / "synonyms.txt"
    synonyms.write_text("billfold, wallet\n")
    code, _, err = run_cli("index", catalog[0], "--out", idx, "-q", "--text-model", tiny_bert_dir, "--image-model", "none",
                           "--synonyms", synonyms, "--collapse-duplicates")
    assert code == 0, err
    before = {name: (idx / name).read_bytes() for name in ("settings/synonyms.txt", "groups.npy")}
    code, _, err = run_cli("train-text", idx, "--qrels", make_qrels(tmp_path / "q.csv", catalog[1]), "--epochs", "1",
                           "--train-batch-size", "4", "-q")
    assert code == 0, err
    assert {name: (idx / name).read_bytes() for name in before} == before
