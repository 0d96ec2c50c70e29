"""Hardening of the HTTP server (issue 15): slow-header clients, product ids with '/', offline API docs,
CORS, uniform reload errors, keyed per-shopper reads, rate limits and redacted access logs; and the
JSONL per-field limit. Each runs the real app (uvicorn on loopback or the ASGI test client) over a real
tiny index built with the packaged models."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from vitrina.engine.data.catalog import read_catalog
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import CatalogError
from vitrina.engine.build.indexing import build_index
from vitrina.serving.access_log import redact_path
from vitrina.serving.app import create_app
from vitrina.serving.config import ServingConfig, ServingConfigError
from vitrina.serving.timeouts import uvicorn_timeouts
from tests.helpers import demo_catalog, demo_rows
from tests.serving_util import KEY, free_port, running_server, wait_ready, ready_client

pytestmark = pytest.mark.slow

SLASHED = ("men/shoes/42", "c/image", "x%2Fy")  # ids with '/', one ending like a sub-resource, one with a literal '%2F'


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(index dir, rows): 12 demo products, three with ids holding '/', indexed with the packaged models."""
    root = tmp_path_factory.mktemp("secure-shop")
    rows = [dict(r) for r in demo_rows()[:12]]
    for row, new_id in zip(rows, SLASHED):
        row["id"] = new_id
    build_index(demo_catalog(root, rows), root / "idx", VitrinaConfig(progress=False))
    return root / "idx", rows



@pytest.fixture
def make_client(shop):
    """Builds ready test clients over the shop index with given settings, closing them after the test."""
    made: list[TestClient] = []

    def make(**settings) -> TestClient:
        made.append(ready_client(shop[0], ServingConfig(**{"api_key": KEY, **settings})))
        return made[-1]

    yield make
    for client in made:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(shop):
    """A real uvicorn on loopback over the shop index, with one CORS origin."""
    with running_server(shop[0], ServingConfig(api_key=KEY, cors_origins=("https://shop.example",))) as base:
        yield base


# --- product ids with '/' ---------------------------------------------------------------------------------------

def test_ids_with_a_slash_reach_the_product_its_similar_products_and_its_image(server, shop):
    _, rows = shop
    by_id = {r["id"]: r for r in rows}
    for product_id in SLASHED:
        encoded = quote(product_id, safe="")  # what clients send: a/b as a%2Fb
        one = httpx.get(f"{server}/products/{encoded}")
        assert one.status_code == 200, one.text
        assert one.json()["id"] == product_id and one.json()["title"] == by_id[product_id]["title"]
        similar = httpx.get(f"{server}/products/{encoded}/similar", params={"k": 3})
        assert similar.status_code == 200, similar.text
        assert len(similar.json()["results"]) == 3 and product_id not in {h["id"] for h in similar.json()["results"]}
        image = httpx.get(f"{server}/products/{encoded}/image")
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    # 'c/image' is a product, not the image of a product 'c'; an unknown id is a clean JSON 404
    unknown = httpx.get(f"{server}/products/{quote('no/such', safe='')}/similar")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "unknown product id 'no/such'"


# --- API docs offline ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_reference_no_external_host_and_their_assets_load(server, page):
    html = httpx.get(f"{server}{page}")
    assert html.status_code == 200
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    assert assets, html.text
    assert not re.search(r"https?://", html.text), "the docs page references another host"
    for asset in assets:
        assert asset.startswith("/"), asset
        loaded = httpx.get(f"{server}{asset}")
        assert loaded.status_code == 200 and len(loaded.content) > 1000, asset
    spec = httpx.get(f"{server}/openapi.json").json()
    assert "/products/{product_id}/image" in spec["paths"]  # the public path names are unchanged


# --- CORS ---------------------------------------------------------------------------------------------------------

def preflight(base: str, origin: str) -> httpx.Response:
    return httpx.options(f"{base}/search", headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                                    "Access-Control-Request-Headers": "X-API-Key"})


def test_cors_preflight_allows_the_configured_origin_only(server, shop):
    allowed = preflight(server, "https://shop.example")
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    denied = preflight(server, "https://evil.example")
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    simple = httpx.get(f"{server}/search", params={"q": "shoes"}, headers={"Origin": "https://shop.example"})
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"
    with pytest.raises(ServingConfigError, match="CORS origin"):
        ServingConfig(cors_origins=("shop.example",))


def test_cors_is_off_by_default(make_client):
    client = make_client()
    answer = client.options("/search", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in answer.headers
    got = client.get("/search", params={"q": "shoes"}, headers={"Origin": "https://shop.example"})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


# --- /admin/reload -----------------------------------------------------------------------------------------------

def test_reload_errors_do_not_tell_which_server_paths_exist(make_client, shop, tmp_path):
    index_dir, _ = shop
    client = make_client()
    not_an_index = index_dir.parent / "just-a-folder"
    not_an_index.mkdir(exist_ok=True)
    (not_an_index / "notes.txt").write_text("hello")
    tries = [index_dir.parent / "missing", not_an_index, not_an_index / "notes.txt", Path("/etc"), tmp_path, Path("/")]
    details = set()
    for path in tries:
        answer = client.post("/admin/reload", json={"path": str(path)}, headers={"X-API-Key": KEY})
        assert answer.status_code == 422
        details.add(answer.json()["detail"])
    assert len(details) == 1, details  # one wording, whatever exists there
    (detail,) = details
    assert "/" not in detail.replace("/admin", "") and "kept serving the current version" in detail
    # an index outside the served index's folder is refused too (tmp_path holds a real copy)
    shutil.copytree(index_dir, tmp_path / "copy")
    outside = client.post("/admin/reload", json={"path": str(tmp_path / "copy")}, headers={"X-API-Key": KEY})
    assert outside.status_code == 422 and outside.json()["detail"] == detail
    # a sibling of the served index, or a folder allowed by reload_roots, still loads
    sibling = index_dir.parent / "idx-sibling"
    shutil.copytree(index_dir, sibling, dirs_exist_ok=True)
    assert client.post("/admin/reload", json={"path": str(sibling)}, headers={"X-API-Key": KEY}).status_code == 200
    roots = make_client(reload_roots=(str(tmp_path),))
    assert roots.post("/admin/reload", json={"path": str(tmp_path / "copy")}, headers={"X-API-Key": KEY}).status_code == 200
    assert roots.post("/admin/reload", json={"path": str(sibling)}, headers={"X-API-Key": KEY}).status_code == 422


# --- per-shopper reads --------------------------------------------------------------------------------------------

def test_per_shopper_reads_need_the_key_by_default(make_client):
    client = make_client()
    personal = [("/users/alice/recommendations", {"k": 3, "include_seen": "true"}), ("/search", {"q": "shoes", "user": "alice"})]
    for path, params in personal:
        refused = client.get(path, params=params)
        assert refused.status_code == 401, (path, refused.text)
        assert "--public-personalisation" in refused.json()["detail"]
        wrong = client.get(path, params=params, headers={"X-API-Key": "not-the-key-at-all"})
        assert wrong.status_code == 401
        keyed = client.get(path, params=params, headers={"Authorization": f"Bearer {KEY}"})
        assert keyed.status_code in (200, 404) and keyed.status_code != 401, keyed.text  # 404: no behaviour yet
    keyed_search = client.get("/search", params={"q": "shoes", "user": "alice"}, headers={"X-API-Key": KEY}).json()
    assert keyed_search["personalised"] is False
    assert client.get("/search", params={"q": "shoes"}).status_code == 200  # plain searches stay open
    assert client.get(f"/products/{quote(SLASHED[0], safe='')}/similar").status_code == 200


def test_public_personalisation_opens_them_and_a_keyless_server_refuses_them(make_client):
    public = make_client(public_personalisation=True)
    assert public.get("/search", params={"q": "shoes", "user": "alice"}).json()["personalised"] is False
    assert public.get("/users/alice/recommendations").status_code == 404  # open: no behaviour vectors yet
    keyless = make_client(api_key=None)
    refused = keyless.get("/users/alice/recommendations")
    assert refused.status_code == 403 and "--public-personalisation" in refused.json()["detail"]


# --- rate limits --------------------------------------------------------------------------------------------------

def test_requests_over_the_address_limit_get_429_with_retry_after_and_probes_are_never_limited(make_client):
    client = make_client(rate_limit="5/minute", key_rate_limit="3/minute")
    codes = [client.get("/search", params={"q": "shoes"}).status_code for _ in range(5)]
    assert codes == [200] * 5
    over = client.get("/search", params={"q": "shoes"})
    assert over.status_code == 429 and over.headers["content-type"] == "application/json"
    assert 1 <= int(over.headers["Retry-After"]) <= 60 and "too many requests" in over.json()["detail"]
    for path in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert all(client.get(path).status_code == 200 for _ in range(3)), path
    # the right key counts against the key's own limits, not the address's
    keyed = [client.get("/search", params={"q": "shoes"}, headers={"X-API-Key": KEY}).status_code for _ in range(4)]
    assert keyed == [200, 200, 200, 429]


def test_wrong_keys_are_limited_harder_then_every_key_check_gets_429(make_client):
    client = make_client(wrong_key_limit="3/minute")
    wrong = {"X-API-Key": "guess-guess-guess"}
    assert [client.post("/admin/reload", headers=wrong).status_code for _ in range(3)] == [401] * 3
    blocked = client.post("/admin/reload", headers=wrong)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert "wrong API keys" in blocked.json()["detail"]
    right = client.get("/users/alice/recommendations", headers={"X-API-Key": KEY})  # even the right key waits now
    assert right.status_code == 429
    assert client.get("/search", params={"q": "shoes"}).status_code == 200  # open reads are unaffected


def test_default_limits_are_generous_and_settings_are_checked(make_client):
    client = make_client()
    assert all(client.get("/search", params={"q": "watch", "k": 3}).status_code == 200 for _ in range(60))
    with pytest.raises(ServingConfigError, match="rate_limit"):
        ServingConfig(rate_limit="lots")
    assert ServingConfig(rate_limit="off").rate_limit == "off"


# --- slow headers -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_timeouts(shop):
    """uvicorn with the header timeout at 1 s and keep-alive at 1 s."""
    app = create_app(shop[0], serving=ServingConfig(api_key=KEY))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           **uvicorn_timeouts(1.0, 1.0)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_ready(f"http://127.0.0.1:{server.config.port}")
        yield server.config.port
    finally:
        server.should_exit = True
        thread.join(30)


def seconds_until_closed(port: int, first: bytes, limit_s: float = 8.0) -> float:
    """Send `first` (an unfinished request), then wait for the server to close; seconds it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        started = time.monotonic()
        if first:
            s.sendall(first)
        while True:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                return float("inf")
            except ConnectionResetError:
                return time.monotonic() - started
            if not chunk:
                return time.monotonic() - started


def test_a_client_sending_partial_headers_is_closed_within_the_header_timeout(short_timeouts):
    port = short_timeouts
    assert seconds_until_closed(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") < 3.0
    assert seconds_until_closed(port, b"") < 3.0  # connected, sent nothing
    # dribbling the header a byte every 0.3 s does not reset the clock
    with socket.create_connection(("127.0.0.1", port), timeout=8) as s:
        started = time.monotonic()
        closed = None
        for byte in b"GET /healthz HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n":
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            time.sleep(0.3)
            if time.monotonic() - started > 6:
                break
        assert closed is not None and closed < 3.5
    # a normal request, and a second one on the same connection after a pause, are answered
    with socket.create_connection(("127.0.0.1", port), timeout=8) as s:
        for pause in (0.0, 0.5):
            time.sleep(pause)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_request_whose_body_comes_late_is_not_cut_by_the_header_timeout(short_timeouts):
    body = b'{"events": []}'
    with socket.create_connection(("127.0.0.1", short_timeouts), timeout=8) as s:
        s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: " + KEY.encode()
                  + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        time.sleep(1.8)  # longer than the header timeout: the headers were complete, so the request stands
        s.sendall(body)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 422") and b"events" in answer


# --- the CLI: access log, timeouts and flags ---------------------------------------------------------------------

def test_vitrina_serve_redacts_shopper_ids_in_its_access_log_and_applies_its_flags(shop, tmp_path):
    index_dir, _ = shop
    port = free_port()
    vitrina = Path(sys.executable).parent / "vitrina"
    env = {**os.environ, "VITRINA_API_KEY": KEY}
    process = subprocess.Popen(
        [str(vitrina), "serve", str(index_dir), "--port", str(port), "--access-log", "--timeout-header", "1",
         "--cors-origin", "https://shop.example", "--rate-limit", "1000/minute"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout_s=180)
        secret = "alice-7f3a9"
        keyed = {"X-API-Key": KEY}
        assert httpx.get(f"{base}/users/{secret}/recommendations", params={"k": 3}, headers=keyed).status_code == 404
        assert httpx.get(f"{base}/search", params={"q": "shoes", "user": secret}, headers=keyed).status_code == 200
        assert httpx.get(f"{base}/search", params={"q": "shoes", "user": secret}).status_code == 401
        assert preflight(base, "https://shop.example").headers["access-control-allow-origin"] == "https://shop.example"
        assert seconds_until_closed(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") < 3.0
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert secret not in output, output
    assert '"GET /users/-/recommendations?k=3 HTTP/1.1" 404' in output, output
    assert re.search(r'"GET /search\?q=shoes&user=- HTTP/1.1" 200', output) and "401" in output, output


def test_redact_path_covers_users_paths_and_secret_parameters():
    assert redact_path("/users/bob/recommendations?k=3&include_seen=true") == "/users/-/recommendations?k=3&include_seen=true"
    assert redact_path("/users/bob%2Fx") == "/users/-"
    assert redact_path("/search?q=a&User=bob&api_key=s3cret&%75ser=bob") == "/search?q=a&User=-&api_key=-&%75ser=-"
    assert redact_path("/search?q=user") == "/search?q=user"


# --- JSONL field limit --------------------------------------------------------------------------------------------

def test_a_jsonl_field_over_the_csv_limit_is_refused_naming_file_line_and_field(tmp_path):
    ok = {"id": "1", "title": "a short title"}
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps(ok) + "\n" + json.dumps({"id": "2", "title": "x" * 10_000_000}) + "\n")
    with pytest.raises(CatalogError) as error:
        read_catalog(path)
    assert str(path) in str(error.value) and "line 2" in str(error.value) and "'title'" in str(error.value)
    nested = tmp_path / "nested.jsonl"
    nested.write_text(json.dumps(ok) + "\n" + json.dumps({"id": "3", "title": "t", "tags": ["y" * 1000] * 200}) + "\n")
    with pytest.raises(CatalogError, match=r"line 2: field 'tags'"):
        read_catalog(nested)
    fine = tmp_path / "fine.jsonl"
    fine.write_text(json.dumps(ok) + "\n" + json.dumps({"id": "4", "title": "y" * 100_000}) + "\n")
    assert len(read_catalog(fine)) == 2


def test_an_ipv6_client_is_counted_by_its_64_network_and_expired_counters_are_swept():
    import asyncio

    from vitrina.serving.ratelimit import RateLimiter, client_id

    assert client_id("2001:db8::1") == client_id("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_id("::ffff:10.0.0.7") == "10.0.0.7" and client_id("10.0.0.7") == "10.0.0.7"
    limiter = RateLimiter("3/minute", None, None, None)
    time.sleep(0.1)  # the library's own first 10 ms sweep, started in its constructor, is over

    async def waits() -> list[float | None]:
        return [await limiter.request_wait(f"2001:db8::{i}", []) for i in range(1, 5)]

    assert [w is None for w in asyncio.run(waits())] == [True, True, True, False]  # one host, many addresses
    assert asyncio.run(limiter.request_wait("2001:db8:0:1::1", [])) is None  # the next /64 is someone else
    sweep = limiter.limiter.storage.timer
    assert sweep.daemon and sweep.interval >= 1  # sweeps seldom, and never keeps the process alive


@pytest.mark.parametrize("flags, complaint", [
    (["--rate-limit", "lots"], "--rate-limit"), (["--wrong-key-limit", "3 per fortnight"], "--wrong-key-limit"),
    (["--cors-origin", "shop.example"], "CORS origin"), (["--timeout-header", "0"], "timeouts must be positive"),
    (["--rate-limit-storage", "nowhere://x"], "rate limit storage"),
])
def test_vitrina_serve_refuses_bad_security_settings_clearly(shop, capsys, flags, complaint):
    from vitrina.cli.main import main

    assert main(["serve", str(shop[0]), *flags]) == 1
    error = capsys.readouterr().err
    assert error.startswith("vitrina: error: ") and complaint in error and "Traceback" not in error
