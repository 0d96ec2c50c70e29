"""Hostile events files (issue 15, items 5 and 7): impossible times, returns, gzip, missing columns,
event identities, and recommendation scores that stay finite whatever the events' weights and ages."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from datetime import datetime, timezone

import numpy as np
import pytest

from vitrina.engine.data.events import EventFieldConfig, EventTimeConfig, MissingColumnError, event_identity, read_events
from vitrina.engine.query.recommend import recency_weights
from tests.helpers import demo_rows, run_cli, write_csv

PRODUCTS = {f"p{i}": i for i in range(6)}


def test_times_in_the_future_or_before_1990_are_bad_rows(tmp_path):
    now = datetime.now(timezone.utc)
    rows = [
        {"user_id": "u1", "product_id": "p1", "event": "view", "timestamp": "9999-12-31"},
        {"user_id": "u1", "product_id": "p2", "event": "view", "timestamp": "1985-06-01"},
        {"user_id": "u1", "product_id": "p3", "event": "view", "timestamp": str(now.timestamp() + 3 * 86_400)},
        {"user_id": "u1", "product_id": "p4", "event": "view", "timestamp": now.isoformat()},  # now: fine
        {"user_id": "u2", "product_id": "p4", "event": "view", "timestamp": "2011-12-09T12:50:00"},
    ]
    log = read_events(write_csv(tmp_path / "e.csv", rows), PRODUCTS)
    assert log.product_rows.tolist() == [4, 4]
    assert log.problems.counts == {"timestamp in the future": 2, "timestamp before 1990": 1}
    assert "e.csv, line 2: timestamp in the future" in log.problems.summary()
    # the window is a setting: a fixed clock accepts what it says is the past
    fixed = read_events(tmp_path / "e.csv", PRODUCTS, times=EventTimeConfig(now=now.timestamp() + 10 * 86_400))
    assert fixed.problems.counts == {"timestamp in the future": 1, "timestamp before 1990": 1}


def test_returns_and_absurd_weights_are_their_own_bad_rows(tmp_path):
    rows = [
        {"user_id": "u1", "product_id": "p1", "event": "purchase", "quantity": "2", "timestamp": "2024-01-01"},
        {"user_id": "u1", "product_id": "p1", "event": "purchase", "quantity": "-2", "timestamp": "2024-01-02"},
        {"user_id": "u2", "product_id": "p2", "event": "purchase", "quantity": "many", "timestamp": "2024-01-02"},
        {"user_id": "u3", "product_id": "p3", "event": "purchase", "quantity": "", "timestamp": "2024-01-02"},
    ]
    log = read_events(write_csv(tmp_path / "e.csv", rows), PRODUCTS)
    assert log.users.tolist() == ["u1", "u3"]
    assert log.problems.counts == {"return (quantity <= 0)": 1, "bad quantity": 1}
    weighted = [{"user_id": "u", "product_id": "p1", "weight": w, "timestamp": "2024-01-01"}
                for w in ("3", "-1", "0", "1e300", "inf", "nan")]
    log = read_events(write_csv(tmp_path / "w.csv", weighted), PRODUCTS)
    assert log.weights.tolist() == [3.0]
    assert log.problems.counts == {"negative or zero weight (a return)": 2, "bad weight": 3}


def test_every_event_has_an_identity(tmp_path):
    rows = [
        {"user_id": "u1", "product_id": "p1", "event": "view", "timestamp": "2024-01-01T10:00:00Z"},
        {"user_id": "u1", "product_id": "p1", "event": "view", "timestamp": "2024-01-01T10:00:00+00:00"},  # the same
        {"user_id": "u1", "product_id": "p1", "event": "cart", "timestamp": "2024-01-01T10:00:00Z"},
        {"user_id": "u1", "product_id": "p1", "event": "view", "timestamp": "2024-01-01T10:00:01Z"},
        {"user_id": "u2", "product_id": "p1", "event": "view", "timestamp": "2024-01-01T10:00:00Z"},
    ]
    log = read_events(write_csv(tmp_path / "e.csv", rows), PRODUCTS)
    ids = log.ids.tolist()
    assert len(ids) == 5 and ids[0] == ids[1] and len(set(ids)) == 4
    assert log.product_ids.tolist() == ["p1"] * 5
    again = read_events(tmp_path / "e.csv", PRODUCTS)
    assert again.ids.tolist() == ids  # stable across reads: a re-run can be recognised
    assert ids[0] == event_identity("u1", "p1", "view", log.timestamps[0])
    own = [{**r, "event_id": f"evt-{i}" if i != 2 else ""} for i, r in enumerate(rows)]
    log = read_events(write_csv(tmp_path / "own.csv", own), PRODUCTS)
    assert log.ids.tolist()[:2] == ["evt-0", "evt-1"] and log.ids.tolist()[2] == ids[2]  # empty id: the digest


def test_gzipped_csv_events_are_read(tmp_path):
    rows = [{"user_id": "u1", "product_id": "p1", "event": "view", "timestamp": "2024-01-01"},
            {"user_id": "u2", "product_id": "p2", "event": "cart", "timestamp": "2024-01-02"}]
    plain = write_csv(tmp_path / "e.csv", rows)
    with plain.open("rb") as src, gzip.open(tmp_path / "e.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    log = read_events(tmp_path / "e.csv.gz", PRODUCTS)
    assert log.users.tolist() == ["u1", "u2"] and log.weights.tolist() == [1.0, 4.0]
    (tmp_path / "broken.csv.gz").write_bytes(gzip.compress(b"user_id,product_id\n")[:-6])
    with pytest.raises(Exception) as caught:
        read_events(tmp_path / "broken.csv.gz", PRODUCTS)
    assert "cannot be read as events" in str(caught.value)
    (tmp_path / "latin1.csv").write_bytes("user_id,product_id,event,timestamp\nJos\xe9,p1,view,2024-01-01\n".encode("latin-1"))
    with pytest.raises(Exception, match="not UTF-8 text"):
        read_events(tmp_path / "latin1.csv", PRODUCTS)


def test_missing_column_names_the_setting():
    from vitrina.engine.data.events import events_from_records

    with pytest.raises(MissingColumnError) as caught:
        events_from_records([{"customer": "u", "product_id": "p1", "timestamp": "2024-01-01", "event": "view"}],
                            PRODUCTS, fields=EventFieldConfig())
    assert caught.value.setting == "user_field" and "missing column 'user_id'" in str(caught.value)


def test_recency_weights_never_all_vanish():
    ages = np.array([40_000.0, 40_010.0, 45_000.0])  # a history decades older than the newest event
    weights = recency_weights(ages, 1.0)
    assert weights.max() == 1.0 and weights.sum() > 0 and np.isfinite(weights).all()
    assert np.allclose(recency_weights(np.array([0.0, 60.0]), 60.0), [1.0, 0.5])
    assert recency_weights(np.array([np.nan, np.inf, 3.0]), 10.0).min() >= 0
    assert (recency_weights(np.array([5.0, 1.0]), None) == 1).all()


@pytest.fixture()
def text_index(tiny_bert_dir, tmp_path):
    products = demo_rows()[:10]
    catalog = write_csv(tmp_path / "products.csv", [{"id": r["id"], "title": r["title"]} for r in products])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    return index, [r["id"] for r in products]


def test_cli_events_gzip_missing_column_flag_and_finite_scores(text_index, tmp_path):
    index, ids = text_index
    old = datetime(1995, 1, 1, tzinfo=timezone.utc).isoformat()
    new = datetime.now(timezone.utc).isoformat()
    # shopper "old" bought long ago; shopper "new" bought today: with a 1-day half-life the old shopper's
    # recency weights underflowed to 0 and every score was NaN (a 500 over HTTP)
    rows = [{"user_id": "old", "product_id": ids[i], "event": "purchase", "timestamp": old} for i in range(3)]
    rows += [{"user_id": "new", "product_id": ids[i], "event": "purchase", "timestamp": new} for i in range(3, 6)]
    rows.append({"user_id": "mallory", "product_id": ids[0], "event": "purchase", "timestamp": "9999-12-31"})
    plain = write_csv(tmp_path / "events.csv", rows)
    with plain.open("rb") as src, gzip.open(tmp_path / "events.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    code, out, err = run_cli("events", "add", index, tmp_path / "events.csv.gz", "--json", "--factors", "2")
    assert code == 0, err
    added = json.loads(out)
    assert added["events"] == 6 and added["bad_rows_by_reason"] == {"timestamp in the future": 1}
    for user in ("old", "new"):
        code, out, err = run_cli("recommend", index, "--user", user, "--json", "--half-life", "1", "--include-seen")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["personalised"] is True and answer["results"]
        assert all(math.isfinite(h["score"]) for h in answer["results"]), answer
    code, out, err = run_cli("search", index, "shirt", "--user", "old", "--json")
    assert code == 0 and all(math.isfinite(h["score"]) for h in json.loads(out)["results"])
    # over HTTP a NaN score was a 500 for every known shopper
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY, ready_client

    client = ready_client(index, ServingConfig(api_key=KEY))
    try:
        for user in ("old", "new"):
            answer = client.get(f"/users/{user}/recommendations", params={"include_seen": "true"},
                                headers={"X-API-Key": KEY})
            assert answer.status_code == 200, answer.text
            assert answer.json()["results"] and all(math.isfinite(h["score"]) for h in answer.json()["results"])
    finally:
        client.__exit__(None, None, None)

    write_csv(tmp_path / "renamed.csv", [{"customer": "u", "product_id": ids[0], "event": "view", "timestamp": new}])
    code, _, err = run_cli("events", "add", index, tmp_path / "renamed.csv")
    assert code == 1 and "missing column 'user_id'" in err and "--user-field" in err and "Traceback" not in err
    code, _, err = run_cli("events", "add", index, tmp_path / "renamed.csv", "--user-field", "customer", "--json")
    assert code == 0, err
