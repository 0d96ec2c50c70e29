"""Frequently bought together (issue 18): basket ids in events, co-purchase counts kept current, and the answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitrina.engine.data.events import read_events
from vitrina.engine.learn.co_purchase import CoPurchaseConfig, CoPurchases
from vitrina.engine.query.bought_together import BoughtTogetherConfig
from vitrina.engine.errors import QueryError
from tests.helpers import demo_rows, run_cli, write_csv

PRODUCTS = {f"p{i}": i for i in range(6)}


def buy(user: str, product: str, day: str, basket: str = "", event: str = "purchase") -> dict:
    return {"user_id": user, "product_id": product, "event": event, "timestamp": day, "basket_id": basket}


def counts_of(rows: list[dict], tmp_path, name: str = "e.csv") -> CoPurchases:
    log = read_events(write_csv(tmp_path / name, rows), PRODUCTS)
    users = {u: i for i, u in enumerate(dict.fromkeys(log.users.tolist()))}
    return CoPurchases.fit(log, np.asarray([users[u] for u in log.users.tolist()]), len(PRODUCTS))


def test_baskets_from_the_basket_column_else_the_same_day(tmp_path):
    rows = [buy("a", "p0", "2024-01-01T09:00", "o1"), buy("a", "p1", "2024-01-03T09:00", "o1"),  # one order, 2 days
            buy("a", "p2", "2024-01-01T10:00", "o2"),  # another order of a, same day: not with p0
            buy("b", "p0", "2024-01-05T08:00"), buy("b", "p2", "2024-01-05T20:00"),  # no basket id: the same day
            buy("b", "p3", "2024-01-06T08:00"),  # the next day: another basket
            buy("c", "p0", "2024-01-05T08:00", event="view"), buy("c", "p4", "2024-01-05T08:00", event="view")]
    log = read_events(write_csv(tmp_path / "e.csv", rows), PRODUCTS)
    assert log.baskets.tolist() == ["o1", "o1", "o2", "", "", "", "", ""]
    counts = counts_of(rows, tmp_path)
    together = counts.together.toarray()
    assert together[0, 1] == together[1, 0] == 1 and together[0, 2] == 1 and together[1, 2] == 0
    assert together[2, 3] == 0 and together[0, 3] == 0
    assert together[0, 4] == 0  # views are in no basket
    assert counts.together.diagonal().tolist()[:4] == [2, 1, 2, 1]
    no_session = [{k: v for k, v in r.items() if k != "basket_id"} | {"session_id": "s1"} for r in rows[:2]]
    assert read_events(write_csv(tmp_path / "s.csv", no_session), PRODUCTS).baskets.tolist() == ["s1", "s1"]
    with pytest.raises(ValueError, match="session length"):
        CoPurchaseConfig(session_hours=0)


def test_distinct_shoppers_per_pair_and_fold_in_equals_one_fit(tmp_path):
    rows = [buy("a", "p0", "2024-01-01", "o1"), buy("a", "p1", "2024-01-01", "o1"),
            buy("a", "p0", "2024-02-01", "o2"), buy("a", "p1", "2024-02-01", "o2"),  # a again: 2 baskets, 1 shopper
            buy("b", "p0", "2024-03-01", "o3"), buy("b", "p1", "2024-03-01", "o3"), buy("b", "p2", "2024-03-01", "o3")]
    counts = counts_of(rows, tmp_path)
    assert counts.together[0, 1] == 3 and counts.shoppers[0, 1] == 2 and counts.shoppers[0, 2] == 1
    # the same events in two batches, split inside a basket: the same counts
    log = read_events(write_csv(tmp_path / "all.csv", rows), PRODUCTS)
    users = np.asarray([0 if u == "a" else 1 for u in log.users.tolist()])
    parts = CoPurchases(len(PRODUCTS))
    for batch in (np.asarray([0, 2, 4, 6]), np.asarray([1, 3, 5])):
        from vitrina.engine.data.events import EventLog
        parts.add(EventLog(log.users[batch], log.product_rows[batch], log.weights[batch], log.timestamps[batch],
                           log.problems, log.ids[batch], log.product_ids[batch], log.baskets[batch]), users[batch])
    assert (parts.together != counts.together).nnz == 0 and (parts.shoppers != counts.shoppers).nnz == 0
    # a product list without p1 (deleted) and with a new product: p1's pairs are gone
    moved = counts.remapped(np.asarray([0, 2, 3, 4, 5, -1]))
    assert moved.together.shape == (6, 6) and moved.together[0, 1] == 1 and moved.together[:, 5].nnz == 0
    assert moved.together[0, 0] == 3 and moved.shoppers[0, 1] == 1
    with pytest.raises(QueryError, match="at least 1"):
        BoughtTogetherConfig(min_shoppers=0)


@pytest.fixture()
def shop(tiny_bert_dir, tmp_path):
    products = demo_rows()[:12]
    catalog = write_csv(tmp_path / "products.csv",
                        [{"id": r["id"], "title": r["title"], "articleType": r["articleType"]} for r in products])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    ids = [r["id"] for r in products]
    rows = []
    for n in range(3):  # ids[0] with ids[1] in 3 baskets of 3 shoppers, with ids[2] in 1
        rows += [buy(f"u{n}", ids[0], "2024-01-01", f"order-{n}"), buy(f"u{n}", ids[1], "2024-01-01", f"order-{n}")]
    rows.append(buy("u0", ids[2], "2024-01-01", "order-0"))
    rows += [buy("u9", ids[0], "2024-01-02"), buy("u9", ids[3], "2024-01-02")] * 2  # no basket id: the same day
    write_csv(tmp_path / "events.csv", rows)
    code, out, err = run_cli("events", "add", index, tmp_path / "events.csv", "--factors", "2")
    assert code == 0, err
    return index, ids, products, tmp_path


def test_recommend_product_ranks_co_purchases_then_fills_with_similar(shop):
    index, ids, products, tmp_path = shop
    code, out, err = run_cli("recommend", index, "--product", ids[0], "-k", "5", "--json")
    assert code == 0, err  # by default a pair needs 2 distinct shoppers: only ids[1] (3 shoppers) qualifies
    assert [h["source"] for h in json.loads(out)["results"]] == ["co-purchase"] + ["similar"] * 4
    code, out, err = run_cli("recommend", index, "--product", ids[0], "-k", "5", "--json", "--min-shoppers", "1")
    assert code == 0, err
    answer = json.loads(out)
    hits = answer["results"]
    assert [h["id"] for h in hits[:3]] == [ids[1], ids[2], ids[3]]  # 3 baskets, then 1 each (ties: catalog order)
    assert [h["source"] for h in hits] == ["co-purchase"] * 3 + ["similar"] * 2
    assert [h.get("co_purchases") for h in hits[:3]] == [3, 1, 1] and "co_purchases" not in hits[3]
    assert ids[0] not in {h["id"] for h in hits} and len({h["id"] for h in hits}) == 5
    assert not {"user", "user_id", "basket", "basket_id"} & set().union(*hits)  # counts only
    log = (index / "events" / "log.jsonl").read_text()
    assert "order-0" not in log and '"basket"' in log  # basket ids are keyed on disk, like users

    code, _, err = run_cli("recommend", index, "--product", ids[0], "--min-shoppers", "0")
    assert code == 1 and "at least 1" in err

    code, _, err = run_cli("recommend", index, "--product", ids[0], "--user", "u0")
    assert code == 1 and "not both" in err
    code, _, err = run_cli("recommend", index)
    assert code == 1 and "--user" in err and "--product" in err
    code, _, err = run_cli("recommend", index, "--product", "no-such-id")
    assert code == 1 and "no product 'no-such-id'" in err and "Traceback" not in err

    # a snapshot saved before co-purchase counts existed: they are rebuilt from the event log
    (index / "behaviour" / "co_purchase.npz").unlink()
    code, out, _ = run_cli("recommend", index, "--product", ids[0], "-k", "1", "--json")
    assert [(h["id"], h["co_purchases"]) for h in json.loads(out)["results"]] == [(ids[1], 3)]

    # new events update the counts without a rebuild
    write_csv(tmp_path / "more.csv", [buy(f"v{n}", ids[0], "2024-02-01", f"o{n}") for n in range(4)]
              + [buy(f"v{n}", ids[5], "2024-02-01", f"o{n}") for n in range(4)])
    assert run_cli("events", "add", index, tmp_path / "more.csv")[0] == 0
    code, out, _ = run_cli("recommend", index, "--product", ids[0], "-k", "2", "--json")
    assert [(h["id"], h["co_purchases"]) for h in json.loads(out)["results"]] == [(ids[5], 4), (ids[1], 3)]


def test_python_api_filters_deletes_and_http(shop):
    import vitrina
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY, ready_client

    index_dir, ids, products, _ = shop
    client = ready_client(index_dir, ServingConfig(api_key=KEY))
    try:
        answer = client.get(f"/products/{ids[0]}/bought-together", params={"k": 4})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [h["source"] for h in body["results"]] == ["co-purchase"] + ["similar"] * 3
        assert body["results"][0]["id"] == ids[1] and body["results"][0]["co_purchases"] == 3
        assert "co_purchases" not in body["results"][-1] and ids[0] not in {h["id"] for h in body["results"]}
        # two shoppers, each with two orders on one day: ids[0] in one, ids[4] in the other, except w1's web-1
        more = [buy("w0", ids[0], "2024-03-01T10:00:00", "web-0"), buy("w0", ids[4], "2024-03-01T10:00:00", "web-0b"),
                buy("w1", ids[0], "2024-03-01T10:00:00", "web-1"), buy("w1", ids[4], "2024-03-01T10:00:00", "web-1"),
                buy("w2", ids[0], "2024-03-01T10:00:00", "web-2"), buy("w2", ids[4], "2024-03-01T10:00:00", "web-2")]
        assert client.post("/events", json={"events": more}, headers={"X-API-Key": KEY}).status_code == 200
        body = client.get(f"/products/{ids[0]}/bought-together", params={"k": 2}).json()  # folded in at once
        assert [(h["id"], h.get("co_purchases")) for h in body["results"]] == [(ids[1], 3), (ids[4], 2)]
        assert client.get("/products/no-such-id/bought-together").status_code == 404
        assert client.get(f"/products/{ids[0]}/bought-together", params={"k": 0}).status_code == 422
    finally:
        client.__exit__(None, None, None)

    index = vitrina.Index(index_dir)
    anyone = BoughtTogetherConfig(min_shoppers=1)
    kind = products[2]["articleType"]
    hits = index.bought_together(ids[0], k=3, where={"articleType": kind}, settings=anyone)
    assert hits[0].id == ids[2] and all(h.product["articleType"] == kind for h in hits)
    index.delete([ids[1]])
    hits = index.bought_together(ids[0], k=11, settings=anyone)
    assert ids[1] not in {h.id for h in hits} and [h.id for h in hits[:3]] == [ids[4], ids[2], ids[3]]
    assert [h.source for h in hits[:4]] == ["co-purchase"] * 3 + ["similar"]
    assert len(hits) == 10  # every other product: co-purchases, then similar ones


def test_unchanged_counts_are_linked_not_rewritten_on_a_snapshot(shop):
    index, ids, products, tmp_path = shop
    stored = index / "behaviour" / "co_purchase.npz"
    before = stored.stat()
    write_csv(tmp_path / "views.csv", [buy(f"w{n}", ids[4], "2024-03-01", event="view") for n in range(3)])
    assert run_cli("events", "add", index, tmp_path / "views.csv")[0] == 0  # views are in no basket
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # the same file, linked
    assert json.loads((index / "behaviour" / "behaviour.json").read_text())["log"]["offset"] > 0
    code, out, _ = run_cli("recommend", index, "--product", ids[0], "-k", "1", "--json")
    assert [(h["id"], h["co_purchases"]) for h in json.loads(out)["results"]] == [(ids[1], 3)]

    write_csv(tmp_path / "buys.csv", [buy(f"x{n}", ids[0], "2024-03-02", f"q{n}") for n in range(4)]
              + [buy(f"x{n}", ids[6], "2024-03-02", f"q{n}") for n in range(4)])
    assert run_cli("events", "add", index, tmp_path / "buys.csv")[0] == 0  # baskets touched: written anew
    assert stored.stat().st_ino != before.st_ino
    code, out, _ = run_cli("recommend", index, "--product", ids[0], "-k", "2", "--json")
    assert [(h["id"], h["co_purchases"]) for h in json.loads(out)["results"]] == [(ids[6], 4), (ids[1], 3)]


def test_a_replaced_counts_file_is_not_linked(tmp_path):
    rows = [buy("a", "p0", "2024-01-01", "o1"), buy("a", "p1", "2024-01-01", "o1")]
    counts = counts_of(rows, tmp_path)
    first, second, third = (tmp_path / n for n in ("v1", "v2", "v3"))
    for folder in (first, second, third):
        folder.mkdir()
    counts.save(first)
    reread = CoPurchases.load(first)
    reread.save(second, previous=first)  # unchanged since it was read: the same file
    assert (second / "co_purchase.npz").stat().st_ino == (first / "co_purchase.npz").stat().st_ino
    other = counts_of(rows + [buy("b", "p0", "2024-01-02", "o2"), buy("b", "p2", "2024-01-02", "o2")], tmp_path, "f.csv")
    (first / "co_purchase.npz").unlink()
    other.save(first)  # somebody else's counts now live there
    reread.save(third, previous=first)
    assert (third / "co_purchase.npz").stat().st_ino != (first / "co_purchase.npz").stat().st_ino
    assert (CoPurchases.load(third).together != counts.together).nnz == 0
