"""Issue 18, behaviour: re-buys decided from the shop's own log, ALS confidence and scoring options,
popularity by purchase weight and by age."""

from __future__ import annotations

import numpy as np
import pytest

from vitrina.engine.config import RecommendConfig
from vitrina.engine.data.events import read_events
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.behaviour import BehaviourConfig, BehaviourModel
from vitrina.engine.query.recommend import behaviour_affinity, includes_seen, popularity
from tests.helpers import write_csv
from tests.test_behaviour import PRODUCTS, SETTINGS, clustered_events, cosine


def buy(user: str, product: str, when: str) -> dict:
    return {"user_id": user, "product_id": product, "event": "purchase", "timestamp": when}


def test_repeat_share_counts_events_that_come_back_to_a_pair_a_day_later(tmp_path):
    first = [buy("u", "p1", "2024-01-01T09:00:00"), buy("u", "p1", "2024-01-01T18:00:00"),  # same day: not a re-buy
             buy("u", "p1", "2024-01-03T09:00:00"), buy("v", "p2", "2024-01-01T09:00:00")]
    model = BehaviourModel.fit(read_events(write_csv(tmp_path / "a.csv", first), PRODUCTS), len(PRODUCTS), SETTINGS)
    assert (model.event_count, model.return_count) == (4, 1) and model.repeat_share == pytest.approx(0.25)
    later = [buy("u", "p2", "2024-01-05T09:00:00"),  # a new pair for u
             buy("v", "p2", "2024-01-02T09:00:00"),  # a day after v's purchase in the first batch: a re-buy
             buy("v", "p3", "2024-01-02T09:00:00"), buy("w", "p3", "2024-01-09T09:00:00")]
    model.add(read_events(write_csv(tmp_path / "b.csv", later), PRODUCTS))
    assert (model.event_count, model.return_count) == (8, 2)
    model.save(tmp_path / "saved")
    loaded = BehaviourModel.load(tmp_path / "saved")
    assert loaded.repeat_share == pytest.approx(0.25)
    assert loaded.remapped([f"p{i}" for i in range(12)]).repeat_share == pytest.approx(0.25)
    refit = BehaviourModel.fit(read_events(write_csv(tmp_path / "all.csv", first + later), PRODUCTS), len(PRODUCTS), SETTINGS)
    assert (refit.event_count, refit.return_count) == (8, 2)  # a refit from the log counts alike
    # a model saved before the count knows no share: own products stay out unless asked for
    import json
    state = json.loads((tmp_path / "saved" / "behaviour.json").read_text())
    del state["repeats"]
    (tmp_path / "saved" / "behaviour.json").write_text(json.dumps(state))
    old = BehaviourModel.load(tmp_path / "saved")
    assert old.repeat_share is None and not includes_seen(old, RecommendConfig())
    assert includes_seen(old, RecommendConfig(), include_seen=True)


def test_includes_seen_follows_the_log_unless_overridden(tmp_path):
    rebuys = [buy("u", "p1", f"2024-01-0{d}") for d in (1, 2, 3)] + [buy("v", "p2", "2024-01-01")]
    once = [buy(f"s{i}", f"p{i}", "2024-01-01") for i in range(9)] + [buy("s0", "p0", "2024-01-04")]
    shop = BehaviourModel.fit(read_events(write_csv(tmp_path / "a.csv", rebuys), PRODUCTS), len(PRODUCTS), SETTINGS)
    fashion = BehaviourModel.fit(read_events(write_csv(tmp_path / "b.csv", once), PRODUCTS), len(PRODUCTS), SETTINGS)
    assert shop.repeat_share == pytest.approx(0.5) and fashion.repeat_share == pytest.approx(0.1)
    assert includes_seen(shop, RecommendConfig())
    assert not includes_seen(shop, RecommendConfig(seen_share=0.6))
    assert includes_seen(fashion, RecommendConfig()) and not includes_seen(fashion, RecommendConfig(seen_share=0.11))
    assert not includes_seen(shop, RecommendConfig(include_seen=False))
    assert includes_seen(shop, RecommendConfig(include_seen=False), include_seen=True)  # the call beats the config
    assert not includes_seen(shop, RecommendConfig(include_seen=True), include_seen=False)
    never = BehaviourModel.fit(read_events(write_csv(tmp_path / "c.csv", clustered_events()), PRODUCTS), len(PRODUCTS),
                               SETTINGS)
    assert never.repeat_share == 0.0 and not includes_seen(never, RecommendConfig())  # nobody came back
    with pytest.raises(QueryError, match="seen_share"):
        RecommendConfig(seen_share=1.5)


@pytest.mark.parametrize("scheme", ["log", "bm25"])
def test_als_confidence_schemes_learn_the_clusters_and_fold_in(tmp_path, scheme):
    settings = BehaviourConfig(factors=2, iterations=20, regularization=0.01, confidence=scheme, scoring="dot")
    log = read_events(write_csv(tmp_path / "e.csv", clustered_events()), PRODUCTS)
    model = BehaviourModel.fit(log, len(PRODUCTS), settings)
    items = model.item_vectors()
    same = np.mean([cosine(items[i], items[j]) for i in range(5) for j in range(5) if i != j])
    across = np.mean([cosine(items[i], items[j]) for i in range(5) for j in range(5, 10)])
    assert same > across + 0.5
    affinity = behaviour_affinity(model, "a0")
    assert affinity.min() >= 0.0 and affinity.max() == pytest.approx(1.0) and not affinity[10:].any()
    assert affinity[:5].mean() > affinity[5:10].mean()
    new = [buy("newbie", f"p{i}", "2024-02-01") for i in (5, 6, 7)]
    model.add(read_events(write_csv(tmp_path / "new.csv", new), PRODUCTS))
    assert behaviour_affinity(model, "newbie")[5:10].mean() > behaviour_affinity(model, "newbie")[:5].mean()
    assert behaviour_affinity(model, "stranger") is None
    model.save(tmp_path / "saved")
    assert BehaviourModel.load(tmp_path / "saved").settings == settings


def test_bad_als_options_are_clear_errors():
    with pytest.raises(QueryError, match="confidence must be one of linear, log, bm25"):
        BehaviourConfig(confidence="sqrt")
    with pytest.raises(QueryError, match="scoring must be one of cosine, dot"):
        BehaviourConfig(scoring="euclid")
    with pytest.raises(QueryError, match="factors"):
        BehaviourConfig(factors=0)


def test_popularity_by_weight_and_by_age(tmp_path):
    events = [buy("heavy", "p1", f"2024-03-0{d}") for d in range(1, 6)]  # one shopper, five purchase lines
    events += [buy("a", "p2", "2024-03-05"), buy("b", "p2", "2024-03-05")]  # two shoppers, once each, lately
    events += [buy(f"old{i}", "p3", "2023-03-05") for i in range(3)]  # three shoppers a year ago
    model = BehaviourModel.fit(read_events(write_csv(tmp_path / "e.csv", events), PRODUCTS), len(PRODUCTS), SETTINGS)
    by_shoppers = popularity(model)
    assert by_shoppers[3] == 1.0 and by_shoppers[3] > by_shoppers[2] > by_shoppers[1]
    by_weight = popularity(model, RecommendConfig(popularity_by="weight"))
    assert by_weight[1] == 1.0 and by_weight[1] > by_weight[3] > by_weight[2]
    recent = popularity(model, RecommendConfig(popularity_half_life_days=30.0))
    assert recent[2] == 1.0 and recent[2] > recent[1] > recent[3]  # a year-old best seller fades
    with pytest.raises(QueryError, match="popularity_by"):
        RecommendConfig(popularity_by="revenue")
    with pytest.raises(QueryError, match="popularity half-life"):
        RecommendConfig(popularity_half_life_days=0.0)
