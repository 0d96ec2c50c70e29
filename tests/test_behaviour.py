"""Events files and behaviour vectors (implicit ALS): bad rows counted, clusters learned, fold-in, save/load."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vitrina.engine.learn.behaviour import BehaviourModel, BehaviourConfig
from vitrina.engine.errors import CatalogError, QueryError
from vitrina.engine.data.events import EventFieldConfig, EventWeightConfig, parse_timestamp, read_events
from tests.helpers import SHARED, write_csv

PRODUCTS = {f"p{i}": i for i in range(12)}  # p0-p4: cluster A, p5-p9: cluster B, p10-p11: never touched
SETTINGS = BehaviourConfig(factors=2, iterations=20, regularization=0.01)  # two clusters: rank 2


def clustered_events(users_per_cluster: int = 20, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for cluster, items in (("a", range(0, 5)), ("b", range(5, 10))):
        for u in range(users_per_cluster):
            for item in rng.choice(list(items), size=3, replace=False):
                rows.append({"user_id": f"{cluster}{u}", "product_id": f"p{item}",
                             "event": str(rng.choice(["view", "click", "cart", "purchase"])),
                             "timestamp": f"2024-01-{1 + u % 28:02d}T10:00:00"})
    return rows


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_bad_rows_are_counted_with_lines_and_the_rest_is_used(tmp_path):
    rows = [
        {"user_id": "u1", "product_id": "p1", "event": "purchase", "timestamp": "2024-03-01T12:00:00Z"},
        {"user_id": "u1", "product_id": "nope", "event": "click", "timestamp": "2024-03-01"},
        {"user_id": "u2", "product_id": "p2", "event": "wishlist", "timestamp": "2024-03-01"},
        {"user_id": "u2", "product_id": "p2", "event": "view", "timestamp": "yesterday"},
        {"user_id": "", "product_id": "p3", "event": "view", "timestamp": "2024-03-01"},
        {"user_id": "u3", "product_id": "p3", "event": "CART", "timestamp": "1709294400"},
    ]
    log = read_events(write_csv(tmp_path / "events.csv", rows), PRODUCTS)
    assert log.users.tolist() == ["u1", "u3"] and log.product_rows.tolist() == [1, 3]
    assert log.weights.tolist() == [EventWeightConfig().purchase, EventWeightConfig().cart]
    assert log.timestamps.tolist() == [parse_timestamp("2024-03-01T12:00:00+00:00"), 1709294400.0]
    assert log.problems.counts == {"unknown product": 1, "unknown event": 1, "bad timestamp": 1, "empty user_id": 1}
    summary = log.problems.summary()
    assert "4 bad rows skipped" in summary and "events.csv, line 3: unknown product" in summary


def test_weight_column_parquet_and_missing_columns(tmp_path):
    table = pa.table({"user_id": ["u1", "u2", "u3"], "product_id": ["p1", "p2", "p3"], "weight": ["2.5", "-1", "x"],
                      "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03"]})
    pq.write_table(table, tmp_path / "e.parquet")
    log = read_events(tmp_path / "e.parquet", PRODUCTS)
    assert log.weights.tolist() == [2.5] and log.problems.counts == {"bad weight": 1, "negative or zero weight (a return)": 1}
    write_csv(tmp_path / "no-kind.csv", [{"user_id": "u", "product_id": "p1", "timestamp": "2024-01-01"}])
    with pytest.raises(CatalogError, match="needs an 'event' or a 'weight' column"):
        read_events(tmp_path / "no-kind.csv", PRODUCTS)
    purchases = read_events(tmp_path / "no-kind.csv", PRODUCTS, fields=EventFieldConfig(default_event="purchase"))
    assert purchases.weights.tolist() == [8.0]
    write_csv(tmp_path / "bad.csv", [{"customer": "u", "product_id": "p1", "timestamp": "2024-01-01"}])
    with pytest.raises(CatalogError, match="missing column 'user_id'"):
        read_events(tmp_path / "bad.csv", PRODUCTS)


def test_als_learns_clusters_and_leaves_untouched_products_without_vectors(tmp_path):
    log = read_events(write_csv(tmp_path / "e.csv", clustered_events()), PRODUCTS)
    model = BehaviourModel.fit(log, len(PRODUCTS), SETTINGS)
    items = model.item_vectors()
    assert np.isfinite(items).all()
    assert model.has_vector.tolist() == [True] * 10 + [False] * 2
    assert not items[10:].any()
    np.testing.assert_allclose(np.linalg.norm(items[:10], axis=1), 1.0, atol=1e-5)
    same = np.mean([cosine(items[i], items[j]) for i in range(5) for j in range(5) if i != j])
    across = np.mean([cosine(items[i], items[j]) for i in range(5) for j in range(5, 10)])
    assert same > across + 0.5
    a_user = model.user_vector("a0")
    assert cosine(a_user, items[:5].mean(0)) > cosine(a_user, items[5:10].mean(0))
    assert model.user_vector("stranger") is None


def test_fold_in_adds_users_and_items_without_a_refit(tmp_path):
    log = read_events(write_csv(tmp_path / "e.csv", clustered_events()), PRODUCTS)
    model = BehaviourModel.fit(log, len(PRODUCTS), SETTINGS)
    before = model.item_factors.copy()
    new = [{"user_id": "newbie", "product_id": f"p{i}", "event": "purchase", "timestamp": "2024-02-01"} for i in (5, 6, 7)]
    new += [{"user_id": "b1", "product_id": "p10", "event": "purchase", "timestamp": "2024-02-01"},
            {"user_id": "b2", "product_id": "p10", "event": "purchase", "timestamp": "2024-02-02"}]
    report = model.add(read_events(write_csv(tmp_path / "new.csv", new), PRODUCTS))
    assert (report.new_users, report.users_updated, report.items_updated, report.refit) == (1, 3, 4, False)
    assert model.has_vector[10] and not model.has_vector[11]
    items = model.item_vectors()
    assert cosine(model.user_vector("newbie"), items[5:10].mean(0)) > cosine(model.user_vector("newbie"), items[:5].mean(0))
    assert cosine(items[10], items[5:10].mean(0)) > cosine(items[10], items[:5].mean(0))  # bought by cluster B
    np.testing.assert_array_equal(model.item_factors[:5], before[:5])  # items nobody touched stay as they were
    model.save(tmp_path / "behaviour")
    loaded = BehaviourModel.load(tmp_path / "behaviour")
    np.testing.assert_array_equal(loaded.item_vectors(), items)
    assert loaded.users == model.users and (loaded.interactions != model.interactions).nnz == 0
    assert model.add(read_events(write_csv(tmp_path / "new.csv", new), PRODUCTS), refit=True).refit


def test_no_events_and_no_saved_state_are_clear_errors(tmp_path):
    write_csv(tmp_path / "e.csv", [{"user_id": "u", "product_id": "zzz", "event": "view", "timestamp": "2024-01-01"}])
    with pytest.raises(QueryError, match="no usable events"):
        BehaviourModel.fit(read_events(tmp_path / "e.csv", PRODUCTS), len(PRODUCTS), SETTINGS)
    with pytest.raises(QueryError, match="no behaviour vectors yet"):
        BehaviourModel.load(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "hm").is_dir(), reason="../shared/data/hm is absent")
def test_hm_purchases_keep_leading_zero_ids():
    import csv

    with (SHARED / "hm" / "articles.csv").open(newline="") as f:
        rows = {r["article_id"]: i for i, r in enumerate(csv.DictReader(f))}
    fields = EventFieldConfig(user_field="customer_id", product_field="article_id", timestamp_field="t_dat",
                         default_event="purchase")
    log = read_events(SHARED / "hm" / "transactions.csv", rows, fields=fields)
    with (SHARED / "hm" / "transactions.csv").open(newline="") as f:
        known = sum(r["article_id"] in rows for r in csv.DictReader(f))  # the sample's articles miss many bought ones
    assert len(log) == known > 5_000
    assert log.problems.counts == {"unknown product": 31_187 - known}
    model = BehaviourModel.fit(log, len(rows), BehaviourConfig(factors=16, iterations=5))
    assert np.isfinite(model.item_vectors()).all() and model.has_vector.sum() > 1000


def test_events_add_and_recommend_commands(tiny_bert_dir, tmp_path):
    import json

    from tests.helpers import demo_rows, run_cli

    products = demo_rows()[:12]
    catalog = write_csv(tmp_path / "products.csv", [{"id": r["id"], "title": r["title"]} for r in products])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    ids = [r["id"] for r in products]
    mapping = {f"p{i}": pid for i, pid in enumerate(ids)}
    events = [{**e, "product_id": mapping[e["product_id"]]} for e in clustered_events(10)]
    events.append({"user_id": "x", "product_id": "not-a-product", "event": "view", "timestamp": "2024-01-01"})
    write_csv(tmp_path / "events.csv", events)
    code, out, err = run_cli("events", "add", index, tmp_path / "events.csv", "--json", "--factors", "2", "--iterations", "20")
    assert code == 0, err
    added = json.loads(out)
    assert added["events"] == len(events) - 1 and added["bad_rows_by_reason"] == {"unknown product": 1}
    assert added["products_with_vectors"] == 10 and "1 bad rows skipped" in err

    # behaviour alone (the titles' tiny random text model knows nothing of the clusters)
    code, out, err = run_cli("recommend", index, "--user", "a0", "-k", "2", "--json", "--behaviour-weight", "1",
                             "--popularity-weight", "0")  # a0 saw 3 of its cluster's 5
    assert code == 0, err
    answer = json.loads(out)
    assert answer["personalised"] is True and len(answer["results"]) >= 1
    seen = {e["product_id"] for e in events if e["user_id"] == "a0"}
    assert not seen & {h["id"] for h in answer["results"]}  # already seen products are left out
    assert {h["id"] for h in answer["results"]} <= set(ids[:5])  # the rest of a0's cluster
    code, out, err = run_cli("recommend", index, "--user", "nobody", "--json")
    assert code == 0 and json.loads(out)["personalised"] is False and "most popular" in err
    code, out, err = run_cli("recommend", index, "--user", "a0", "--json")  # default blend: a full, unseen list
    assert code == 0 and len(json.loads(out)["results"]) == 12 - 3 and not seen & {h["id"] for h in json.loads(out)["results"]}
    code, _, err = run_cli("recommend", index, "--user", "a0", "--behaviour-weight", "2")
    assert code == 1 and "behaviour weight must be in [0, 1]" in err

    def ranks(user: str) -> float:
        code, out, err = run_cli("search", index, products[0]["title"], "--user", user, "-k", "12", "--json")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["user"] == user and answer["personalised"] is True and len(answer["results"]) == 12
        order = [h["id"] for h in answer["results"]]
        return float(np.mean([order.index(pid) for pid in ids[:5]]))

    assert ranks("a0") < ranks("b0")  # cluster A's products rank higher for a shopper of cluster A
    code, out, err = run_cli("search", index, products[0]["title"], "--user", "stranger", "--json")
    plain = json.loads(run_cli("search", index, products[0]["title"], "--json")[1])
    assert code == 0 and json.loads(out)["personalised"] is False and "not personalised" in err
    assert [h["id"] for h in json.loads(out)["results"]] == [h["id"] for h in plain["results"]]

    write_csv(tmp_path / "more.csv", [{"user_id": "newbie", "product_id": ids[6], "event": "purchase", "timestamp": "2024-02-01"}])
    code, out, err = run_cli("events", "add", index, tmp_path / "more.csv", "--json")
    assert code == 0 and json.loads(out)["new_users"] == 1
    assert run_cli("recommend", index, "--user", "newbie", "--json")[1]

    code, _, err = run_cli("events", "add", index, tmp_path / "missing.csv")
    assert code == 1 and "events file not found" in err
    code, _, err = run_cli("events", "add", index, tmp_path / "more.csv", "--weights", "like=3")
    assert code == 1 and "unknown event 'like'" in err

    write_csv(catalog, [{"id": r["id"], "title": r["title"]} for r in reversed(products)])
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    code, _, err = run_cli("recommend", index, "--user", "a0")
    assert code == 1 and "no behaviour vectors yet" in err  # a re-index starts without them


def test_last_seen_keeps_each_pairs_latest_event_across_adds(tmp_path):
    rows = [{"user_id": "u", "product_id": "p1", "event": "view", "timestamp": "2024-01-01"},
            {"user_id": "u", "product_id": "p1", "event": "cart", "timestamp": "2024-01-05"},
            {"user_id": "u", "product_id": "p1", "event": "view", "timestamp": "2024-01-03"},
            {"user_id": "u", "product_id": "p2", "event": "view", "timestamp": "2024-01-02"},
            {"user_id": "v", "product_id": "p3", "event": "view", "timestamp": "2024-01-11"}]
    model = BehaviourModel.fit(read_events(write_csv(tmp_path / "a.csv", rows), PRODUCTS), len(PRODUCTS), SETTINGS)
    history = dict(zip(*model.history("u")))
    assert history == {1: 6.0, 2: 9.0}  # days before the newest event (v's, 2024-01-11)
    later = [{"user_id": "u", "product_id": "p2", "event": "view", "timestamp": "2024-01-21"},
             {"user_id": "w", "product_id": "p1", "event": "view", "timestamp": "2023-12-01"}]
    model.add(read_events(write_csv(tmp_path / "b.csv", later), PRODUCTS))
    model.save(tmp_path / "saved")
    loaded = BehaviourModel.load(tmp_path / "saved")
    assert dict(zip(*loaded.history("u"))) == {1: 16.0, 2: 0.0} and dict(zip(*loaded.history("w"))) == {1: 51.0}
    assert loaded.shoppers_per_product[[1, 2, 3, 4]].tolist() == [2, 1, 1, 0]


@pytest.mark.slow
def test_recommend_reaches_unbought_products_like_the_shoppers_own(tmp_path):
    """With the packaged text model (a random tiny one puts every title at cosine ~1)."""
    from vitrina.engine.config import RecommendConfig, VitrinaConfig
    from vitrina.engine.query.recommend import recommend
    from vitrina.engine.query.search import SearchSession
    from tests.helpers import run_cli

    titles = ["red leather boots women", "red leather boots men", "red leather boots kids", "steel watch strap",
              "steel watch strap black", "blue cotton shirt", "blue cotton shirt men", "green summer dress"]
    catalog = write_csv(tmp_path / "products.csv", [{"id": f"q{i}", "title": t} for i, t in enumerate(titles)])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--image-model", "none", "-q")[0] == 0
    events = [{"user_id": "boots", "product_id": "q0", "event": "purchase", "timestamp": "2024-01-01"},
              {"user_id": "boots", "product_id": "q3", "event": "purchase", "timestamp": "2023-01-01"}]
    events += [{"user_id": f"s{i}", "product_id": "q5", "event": "purchase", "timestamp": "2024-01-02"} for i in range(6)]
    write_csv(tmp_path / "events.csv", events)
    assert run_cli("events", "add", index, tmp_path / "events.csv", "--factors", "2")[0] == 0
    session = SearchSession(index, VitrinaConfig(image_model=None, progress=False))

    hits, personalised = recommend(session, "boots", k=3, settings=RecommendConfig(popularity_weight=0.0))
    ids = [h.id for h in hits]
    assert personalised and {"q1", "q2"} == set(ids[:2])  # nobody bought them: likeness to q0 finds them
    assert not {"q0", "q3"} & set(ids)
    assert "q1" in {h.id for h in recommend(session, "boots", k=3)[0]}  # still, beside the best seller
    # recency: the year-old watch strap matters less than the new boots, and alike without a half-life
    scores = {h.id: h.score for h in recommend(session, "boots", k=7)[0]}
    flat = {h.id: h.score for h in recommend(session, "boots", k=7, settings=RecommendConfig(half_life_days=None))[0]}
    assert flat["q4"] - flat["q1"] > scores["q4"] - scores["q1"]
    # a heavy popularity weight puts the best seller first; a stranger gets the best sellers
    assert recommend(session, "boots", k=1, settings=RecommendConfig(popularity_weight=100.0))[0][0].id == "q5"
    assert recommend(session, "stranger", k=1)[0][0].id == "q5" and not recommend(session, "stranger")[1]
    assert {"q0", "q3"} <= {h.id for h in recommend(session, "boots", k=8, include_seen=True)[0]}


def test_recommend_with_seen_products_ranks_re_buys_by_count_and_recency(tiny_bert_dir, tmp_path):
    """Re-buys (issue 18): with include_seen, a shopper's own products score by how often and how lately."""
    from vitrina.engine.config import RecommendConfig, VitrinaConfig
    from vitrina.engine.query.recommend import recommend, repurchase
    from vitrina.engine.query.personalise import load_behaviour
    from vitrina.engine.query.search import SearchSession
    from tests.helpers import demo_rows, run_cli

    products = demo_rows()[:12]
    catalog = write_csv(tmp_path / "products.csv", [{"id": r["id"], "title": r["title"]} for r in products])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    ids = [r["id"] for r in products]
    buy = lambda user, pid, day: {"user_id": user, "product_id": pid, "event": "purchase", "timestamp": day}
    events = [buy("w", ids[0], day) for day in ("2023-12-30", "2023-12-31", "2024-01-01")]  # often, 120 days ago
    events += [buy("w", ids[1], "2024-04-30"), buy("w", ids[2], "2024-04-30"), buy("w", ids[2], "2024-04-29")]
    events += [buy(f"s{i}", ids[5], "2024-04-30") for i in range(8)]  # the best seller
    write_csv(tmp_path / "events.csv", events)
    assert run_cli("events", "add", index, tmp_path / "events.csv", "--factors", "2")[0] == 0
    session = SearchSession(index, VitrinaConfig(image_model=None, progress=False))
    model = load_behaviour(session)

    rows, score = repurchase(model, "w", RecommendConfig())
    by_id = dict(zip((ids[r] for r in rows), score))
    assert by_id[ids[2]] == pytest.approx(1.0)  # two recent purchases: the highest
    assert by_id[ids[0]] == pytest.approx(3 * 0.5 / 2, rel=0.01)  # three, a half-life old
    assert by_id[ids[1]] == pytest.approx(0.5, rel=0.02)
    flat = dict(zip((ids[r] for r in rows), repurchase(model, "w", RecommendConfig(rebuy_half_life_days=None))[1]))
    assert flat[ids[0]] == pytest.approx(1.0)  # without decay the most often bought leads
    recent = dict(zip((ids[r] for r in rows), repurchase(model, "w", RecommendConfig(rebuy_count_power=0.0))[1]))
    assert recent[ids[1]] == recent[ids[2]] == pytest.approx(1.0)  # only how lately counts
    assert recent[ids[0]] == pytest.approx(0.5, rel=0.01)

    heavy = RecommendConfig(rebuy_weight=10.0)
    top = [h.id for h in recommend(session, "w", k=3, include_seen=True, settings=heavy)[0]]
    assert top == [ids[2], ids[0], ids[1]]  # own products first, by re-buy score (1.0, 0.75, 0.5)
    unseen = {h.id for h in recommend(session, "w", k=12, include_seen=False, settings=heavy)[0]}
    assert not unseen & {ids[0], ids[1], ids[2]}  # without own products the re-buy score changes nothing
    assert unseen == {h.id for h in recommend(session, "w", k=12, include_seen=False)[0]}
    # this shop re-buys (3 of its 14 events come back to a product a day later or more, >= seen_share):
    # by default own products are in; an index saying otherwise keeps them out
    assert model.repeat_share == pytest.approx(3 / 14)
    assert [h.id for h in recommend(session, "w", k=3, settings=heavy)[0]] == top
    assert unseen == {h.id for h in recommend(session, "w", k=12, settings=RecommendConfig(include_seen=False))[0]}
    import json
    code, out, err = run_cli("recommend", index, "--user", "w", "-k", "3", "--json", "--include-seen", "--rebuy-weight", "10")
    assert code == 0, err
    assert [h["id"] for h in json.loads(out)["results"]] == top
    code, out, err = run_cli("recommend", index, "--user", "w", "-k", "3", "--json", "--rebuy-weight", "10")
    assert code == 0 and [h["id"] for h in json.loads(out)["results"]] == top  # decided from the log
    code, out, err = run_cli("recommend", index, "--user", "w", "-k", "12", "--json", "--exclude-seen")
    assert code == 0 and {h["id"] for h in json.loads(out)["results"]} == unseen
    code, _, err = run_cli("recommend", index, "--user", "w", "--include-seen", "--exclude-seen")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run_cli("recommend", index, "--user", "w", "--include-seen", "--rebuy-weight", "-1")
    assert code == 1 and "re-buy" in err
    with pytest.raises(QueryError, match="re-buy"):
        RecommendConfig(rebuy_weight=-1.0)
    with pytest.raises(QueryError, match="re-buy half-life"):
        RecommendConfig(rebuy_half_life_days=0.0)
