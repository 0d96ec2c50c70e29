"""The HTTP API over a real index (packaged MiniLM and EfficientNet-Lite0): contract, filters, bad input,
keys, feedback, metrics, micro-batching, the query cache and index swaps under concurrent load."""

from __future__ import annotations

import io
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from vitrina.index import IndexManifest
from vitrina.serving.batching import MicroBatcher
from vitrina.serving.config import ServingConfig
from tests.helpers import DEMO_DATA, write_csv
from tests.serving_util import KEY, TYPES, running_server, shop_catalog, ready_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(catalog, index dir, rows): 60 products with brands and prices, indexed with the packaged models."""
    root = tmp_path_factory.mktemp("shop")
    catalog, rows = shop_catalog(root)
    build_index(catalog, root / "idx", VitrinaConfig(progress=False))
    return catalog, root / "idx", rows



@pytest.fixture(scope="module")
def client(shop):
    c = ready_client(shop[1])
    yield c
    c.__exit__(None, None, None)


def jpeg(rows, i: int = 0) -> bytes:
    return (DEMO_DATA / rows[i]["image"]).read_bytes()


def test_search_returns_the_contract_shape_with_metadata_and_index_version(client, shop):
    _, idx, rows = shop
    body = client.get("/search", params={"q": "leather wallet", "k": 5}).json()
    assert set(body) == {"results", "index_version"}
    assert body["index_version"] == IndexManifest.load(idx).version
    assert len(body["results"]) == 5
    by_id = {r["id"]: r for r in rows}
    for hit in body["results"]:
        assert isinstance(hit["score"], float) and hit["title"] == by_id[hit["id"]]["title"]
        assert hit["brand"] == by_id[hit["id"]]["brand"] and isinstance(hit["price"], float)
    assert [h["articleType"] for h in body["results"]].count("Wallets") >= 4


@pytest.mark.parametrize("mode", ["dense", "hybrid", "lexical"])
def test_filtered_search_gets_k_hits_inside_the_filter_and_matches_brute_force(client, shop, mode):
    _, _, rows = shop
    params = {"q": "black shoes for running", "k": 10, "category": "watches", "mode": mode}  # case-insensitive
    hits = client.get("/search", params=params).json()["results"]
    assert len(hits) == (10 if mode != "lexical" else len(hits)) and {h["articleType"] for h in hits} == {"Watches"}
    if mode == "dense":  # exactly the 10 watches, ranked by cosine like a brute-force scan
        session = client.app.state.holder.current.session
        query = session.encode_queries(["black shoes for running"], "text")[0]
        space = session.directory.spaces["text"]
        watches = [session.products.row_of(r["id"]) for r in rows if r["articleType"] == "Watches"]
        expected = sorted(watches, key=lambda row: -float(space.vector_of_row(row) @ query))
        assert [h["id"] for h in hits] == [session.products.ids[row] for row in expected]
    priced = client.get("/search", params={"q": "shoes", "k": 60, "price_min": 20, "price_max": 50, "brand": ["Nike", "puma"]}).json()
    expected_ids = {r["id"] for r in rows if 20 <= float(r["price"]) <= 50 and r["brand"].lower() in ("nike", "puma")}
    assert {h["id"] for h in priced["results"]} == expected_ids and expected_ids


def test_similar_and_image_search_find_the_same_kind_of_product(client, shop):
    _, _, rows = shop
    shoe = next(r for r in rows if r["articleType"] == "Sports Shoes")
    similar = client.get(f"/products/{shoe['id']}/similar", params={"k": 5}).json()
    assert shoe["id"] not in [h["id"] for h in similar["results"]]
    assert sum(h["articleType"] in ("Sports Shoes", "Casual Shoes") for h in similar["results"]) >= 4
    upload = client.post("/search/image", params={"k": 3}, files={"file": ("shoe.jpg", jpeg([shoe]), "image/jpeg")}).json()
    assert upload["results"][0]["id"] == shoe["id"] and set(upload) == {"results", "index_version"}
    filtered = client.post("/search/image", params={"k": 5, "category": "Wallets"},
                           files={"file": ("shoe.jpg", jpeg([shoe]), "image/jpeg")}).json()["results"]
    assert len(filtered) == 5 and {h["articleType"] for h in filtered} == {"Wallets"}
    image = client.get(f"/products/{shoe['id']}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def bomb_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, "PNG")  # side² pixels in a few KB
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "message"),
    [
        ("get", "/search", {"params": {"q": ""}}, 422, "at least 1 character"),
        ("get", "/search", {"params": {"q": "  \t "}}, 422, "the query is empty"),
        ("get", "/search", {"params": {"q": "x" * 513}}, 422, "at most 512 characters"),
        ("get", "/search", {"params": {}}, 422, "query.q: Field required"),
        ("get", "/search", {"params": {"q": "shoes", "k": 0}}, 422, "query.k"),
        ("get", "/search", {"params": {"q": "shoes", "k": 101}}, 422, "less than or equal to 100"),
        ("get", "/search", {"params": {"q": "shoes", "k": "ten"}}, 422, "valid integer"),
        ("get", "/search", {"params": {"q": "shoes", "price_min": 50, "price_max": 10}}, 422, "price_min 50.0 is above price_max 10.0"),
        ("get", "/search", {"params": {"q": "shoes", "price_min": -1}}, 422, "query.price_min"),
        ("get", "/search", {"params": {"q": "shoes", "space": "audio"}}, 422, "query.space"),
        ("get", "/products/no-such-id/similar", {}, 404, "unknown product id 'no-such-id'"),
        ("get", "/products/no-such-id", {}, 404, "unknown product id"),
        ("post", "/search/image", {"files": {"file": ("a.txt", b"hello, not an image", "text/plain")}}, 422, "is not a readable image"),
        ("post", "/search/image", {"files": {"file": ("a.jpg", b"", "image/jpeg")}}, 422, "the uploaded file is empty"),
        ("post", "/search/image", {"files": {"file": ("bomb.png", bomb_png(6_000), "image/png")}}, 422, "6000x6000 pixels, more than the limit of 25,000,000"),
        ("post", "/search/image", {"files": {"file": ("bomb.png", bomb_png(14_000), "image/png")}}, 422, "decompression bomb"),
        ("post", "/search/image", {"files": {"other": ("a.jpg", b"123", "image/jpeg")}}, 422, "body.file: Field required"),
        ("post", "/search/image", {"content": b"not multipart", "headers": {"content-type": "text/plain"}}, 422, "file"),
        ("post", "/search/image", {"files": {"file": ("big.jpg", b"\xff" * (10 * 2**20 + 1), "image/jpeg")}}, 413, "Too Large"),
        ("post", "/events", {"content": b"{not json", "headers": {"content-type": "application/json", "X-API-Key": KEY}}, 422, "JSON"),
        ("post", "/events", {"json": {"events": []}, "headers": {"X-API-Key": KEY}}, 422, "at least 1 item"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message_never_a_500(client, shop, method, url, kwargs, status, message):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.text


def test_truncated_upload_is_refused_and_the_service_keeps_answering(client, shop):
    data = jpeg(shop[2])
    response = client.post("/search/image", files={"file": ("cut.jpg", data[: len(data) // 2], "image/jpeg")})
    assert response.status_code == 422 and "not a readable image" in response.json()["detail"]
    assert client.get("/search", params={"q": "watch"}).status_code == 200


def test_writes_need_the_key_in_either_header_compared_and_never_logged(shop, caplog):
    _, idx, rows = shop
    event = {"events": [{"user_id": "u-key", "product_id": rows[0]["id"], "event": "view", "timestamp": "2024-05-01"}]}
    copy = idx.parent / "idx-keys"
    shutil.copytree(idx, copy)
    c = ready_client(copy, ServingConfig(api_key=KEY, open_reads=False))
    try:
        with caplog.at_level(logging.DEBUG):
            assert c.post("/events", json=event).status_code == 401
            assert c.post("/events", json=event, headers={"X-API-Key": KEY + "x"}).status_code == 401
            assert c.post("/events", json=event, headers={"Authorization": "Bearer wrong-key-123"}).status_code == 401
            assert c.post("/events", json=event, headers={"X-API-Key": KEY}).status_code == 200
            assert c.post("/events", json=event, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
            assert c.get("/search", params={"q": "watch"}).status_code == 401  # keyed reads
            assert c.get("/search", params={"q": "watch"}, headers={"X-API-Key": KEY}).status_code == 200
            assert c.post("/admin/reload", headers={"X-API-Key": "nope-nope-nope"}).status_code == 401
        assert KEY not in caplog.text and "wrong-key-123" not in caplog.text
        assert KEY not in repr(ServingConfig(api_key=KEY))
    finally:
        c.__exit__(None, None, None)
    keyless = ready_client(copy, ServingConfig(api_key=None))
    try:
        refused = keyless.post("/events", json=event, headers={"X-API-Key": KEY})
        assert refused.status_code == 403 and "VITRINA_API_KEY" in refused.json()["detail"]
        assert keyless.get("/search", params={"q": "watch"}).status_code == 200  # reads stay open
    finally:
        keyless.__exit__(None, None, None)


def test_events_feed_recommendations_and_personalised_search(shop):
    _, idx, rows = shop
    copy = idx.parent / "idx-events"
    shutil.copytree(idx, copy)
    c = ready_client(copy)
    try:
        keyed = {"X-API-Key": KEY}  # per-shopper reads need the key
        none_yet = c.get("/users/alice/recommendations", headers=keyed)
        assert none_yet.status_code == 404 and "no behaviour vectors yet" in none_yet.json()["detail"]
        watches = [r["id"] for r in rows if r["articleType"] == "Watches"]
        wallets = [r["id"] for r in rows if r["articleType"] == "Wallets"]
        events = [{"user_id": "alice", "product_id": p, "event": "purchase", "timestamp": f"2024-05-0{i % 9 + 1}"}
                  for i, p in enumerate(watches[:5])]
        events += [{"user_id": "bob", "product_id": p, "event": "cart", "timestamp": 1714521600 + i}
                   for i, p in enumerate(wallets[:5])]
        events += [{"user_id": "bob", "product_id": "no-such-product", "event": "click", "timestamp": "2024-05-01"},
                   {"user_id": "bob", "product_id": wallets[0], "event": "view", "timestamp": "yesterday"}]
        added = c.post("/events", json={"events": events}, headers={"X-API-Key": KEY}).json()
        assert added["accepted"] == 10 and added["rejected"] == 2
        assert added["problems"] == {"unknown product": 1, "bad timestamp": 1}
        assert added["examples"] == ["events[10]: unknown product", "events[11]: bad timestamp"]
        recs = c.get("/users/alice/recommendations", params={"k": 5}, headers=keyed).json()
        assert recs["personalised"] is True and len(recs["results"]) == 5
        assert not set(watches[:5]) & {h["id"] for h in recs["results"]}  # already bought: left out
        assert sum(h["articleType"] == "Watches" for h in recs["results"]) >= 3  # like what she bought
        stranger = c.get("/users/stranger/recommendations", params={"k": 3}, headers=keyed).json()
        assert stranger["personalised"] is False and len(stranger["results"]) == 3
        # alice buys two watches again weeks later: 2 of the shop's 12 events are re-buys, so by default
        # her own products come back, first (issue 18); include_seen=false still leaves them out
        again = [{"user_id": "alice", "product_id": p, "event": "purchase", "timestamp": "2024-06-01"} for p in watches[:2]]
        assert c.post("/events", json={"events": again}, headers={"X-API-Key": KEY}).json()["accepted"] == 2
        recs = c.get("/users/alice/recommendations", params={"k": 5}, headers=keyed).json()
        assert {h["id"] for h in recs["results"][:2]} == set(watches[:2])
        recs = c.get("/users/alice/recommendations", params={"k": 5, "include_seen": "false"}, headers=keyed).json()
        assert not set(watches[:5]) & {h["id"] for h in recs["results"]}
        personal = c.get("/search", params={"q": "black", "k": 5, "user": "bob"}, headers=keyed).json()
        assert personal["personalised"] is True
        plain = c.get("/search", params={"q": "black", "k": 5, "user": "stranger"}, headers=keyed).json()
        assert plain["personalised"] is False
    finally:
        c.__exit__(None, None, None)


def test_metrics_count_requests_and_time_encoders_and_index(client, shop):
    client.get("/search", params={"q": "metrics probe shoes"})
    client.get("/search", params={"q": "metrics probe shoes"})  # the second is a cache hit
    text = client.get("/metrics").text
    version = client.get("/readyz").json()["index_version"]
    assert 'vitrina_requests_total{method="GET",route="/search",status="200"}' in text
    assert 'vitrina_request_seconds_bucket{le="0.1",route="/search"}' in text
    assert 'vitrina_encoder_seconds_count{modality="text"}' in text
    assert 'vitrina_index_search_seconds_count{space="text"}' in text
    assert f'vitrina_index_version_info{{version="{version}"}} 1.0' in text
    assert 'vitrina_query_cache_total{result="hit"}' in text
    hits = float(text.split('vitrina_query_cache_total{result="hit"} ')[1].split()[0])
    assert hits >= 1


def test_query_cache_returns_the_same_vector_and_results(client):
    live = client.app.state.holder.current
    before = live.cache.hits
    first = client.get("/search", params={"q": "red cotton t-shirt", "k": 5, "mode": "dense"}).json()
    second = client.get("/search", params={"q": "red   cotton t-shirt", "k": 5, "mode": "dense"}).json()  # same once cleaned
    assert first == second and live.cache.hits == before + 1


def test_micro_batching_encodes_concurrent_queries_together_and_routes_each_vector_back(client):
    import asyncio

    session = client.app.state.holder.current.session
    batches: list[tuple[list[str], np.ndarray]] = []

    def encode(items):
        texts = [text for text, _ in items]
        vectors = session.encode_queries(texts, "text")
        batches.append((texts, vectors))
        return vectors

    queries = [f"{colour} {kind}" for colour in ("red", "blue", "black", "white") for kind in ("watch", "wallet", "shoes")]

    async def run():
        batcher = MicroBatcher(encode, max_size=8, max_wait_s=0.01)
        try:
            return await asyncio.gather(*(batcher.submit((q, "text")) for q in queries))
        finally:
            batcher.close()

    vectors = dict(zip(queries, asyncio.run(run())))
    sizes = [len(texts) for texts, _ in batches]
    assert sum(sizes) == len(queries) and max(sizes) == 8 and len(sizes) < len(queries)
    for texts, encoded in batches:  # each request got its own row of its batch
        for text, row in zip(texts, encoded):
            assert np.array_equal(vectors[text], row)
    # int8 dynamic quantisation scales activations per batch, so the same query in another batch
    # gets a vector close to, not bit-equal with, this one
    elsewhere = session.encode_queries(queries, "text")
    cosines = np.sum(np.stack([vectors[q] for q in queries]) * elsewhere, axis=1)
    assert cosines.min() > 0.98


def test_reload_swaps_versions_atomically_under_concurrent_load(shop, tmp_path):
    catalog, idx, rows = shop
    live_dir = tmp_path / "live"
    shutil.copytree(idx, live_dir)
    renamed = [dict(r, title="Zanzibar " + r["title"]) if i == 0 else r for i, r in enumerate(rows)]
    next_catalog = write_csv(catalog.parent / "next.csv", renamed)
    staged = tmp_path / "staged"
    build_index(next_catalog, staged, VitrinaConfig(progress=False))
    versions = [IndexManifest.load(live_dir).version, IndexManifest.load(staged).version]
    with running_server(live_dir, ServingConfig(api_key=KEY, rate_limit="off")) as base:  # a load test from one address
        stop = threading.Event()
        seen: list[list[str]] = []
        failures: list[str] = []

        def hammer(worker: int) -> None:
            order: list[str] = []
            with httpx.Client(base_url=base, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    r = http.get("/search", params={"q": f"{TYPES[i % len(TYPES)]} {worker}", "k": 5})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        order.append(r.json()["index_version"])
                    i += 1
            seen.append(order)

        with ThreadPoolExecutor(4) as pool:
            for w in range(4):
                pool.submit(hammer, w)
            time.sleep(1.5)
            swap = httpx.post(f"{base}/admin/reload", json={"path": str(staged)}, headers={"X-API-Key": KEY}, timeout=120)
            assert swap.status_code == 200, swap.text
            assert swap.json()["index_version"] == versions[1] and swap.json()["previous_version"] == versions[0]
            time.sleep(1.5)
            bad = httpx.post(f"{base}/admin/reload", json={"path": str(tmp_path / "nowhere")}, headers={"X-API-Key": KEY}, timeout=60)
            assert bad.status_code == 422 and "kept serving the current version" in bad.json()["detail"]
            time.sleep(0.5)
            stop.set()
        assert not failures
        for order in seen:  # every response names a real version, and once new, never old again
            assert set(order) <= set(versions) and order == sorted(order, key=versions.index)
        assert any(versions[1] in order for order in seen) and any(versions[0] in order for order in seen)
        after = httpx.get(f"{base}/search", params={"q": "zanzibar", "k": 1, "mode": "lexical"}).json()
        assert after["index_version"] == versions[1] and after["results"][0]["title"].startswith("Zanzibar")


def test_vitrina_serve_with_two_workers_swaps_both_and_adds_up_their_metrics(shop, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.serving_util import free_port, wait_ready

    catalog, idx, rows = shop
    live_dir, staged = tmp_path / "live", tmp_path / "staged"
    shutil.copytree(idx, live_dir)
    build_index(write_csv(tmp_path / "next.csv", rows[:-1]), staged, VitrinaConfig(progress=False))
    new_version = IndexManifest.load(staged).version
    port = free_port()
    vitrina = Path(sys.executable).parent / "vitrina"
    env = {**os.environ, "VITRINA_API_KEY": KEY}
    process = subprocess.Popen([str(vitrina), "serve", str(live_dir), "--port", str(port), "--workers", "2"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout_s=180)
        for _ in range(20):  # both workers up: the kernel spreads connections over them
            wait_ready(base)
        swap = httpx.post(f"{base}/admin/reload", json={"path": str(staged)}, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        assert swap.status_code == 200 and swap.json()["index_version"] == new_version
        deadline = time.monotonic() + 60
        streak = 0
        while streak < 30 and time.monotonic() < deadline:  # the other worker follows within its poll interval
            body = httpx.get(f"{base}/search", params={"q": "watch", "k": 2}, headers={"Connection": "close"}).json()
            streak = streak + 1 if body["index_version"] == new_version else 0
        assert streak == 30, "a worker kept serving the old version"
        metrics = httpx.get(f"{base}/metrics").text
        total = sum(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith('vitrina_requests_total{') and 'route="/search"' in line)
        assert total >= 30  # both workers' counts, added up
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert KEY not in output and "serving" in output
