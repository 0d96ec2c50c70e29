"""Helpers for the serving tests: a shop catalog with brands and prices, and a real server on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import uvicorn
from fastapi.testclient import TestClient

from vitrina.serving.app import create_app
from vitrina.serving.config import ServingConfig
from tests.helpers import demo_catalog, demo_rows

KEY = "test-key-0123456789"
TYPES = ("Watches", "Sports Shoes", "Wallets", "Tshirts", "Handbags", "Casual Shoes")


def shop_catalog(dest: Path, per_type: int = 10) -> tuple[Path, list[dict]]:
    """Demo products of six types with a brand (the title's first word) and a price."""
    rows = demo_rows()
    picked = []
    for kind in TYPES:
        picked += [dict(r) for r in rows if r["articleType"] == kind][:per_type]
    for r in picked:
        r["brand"] = r["title"].split()[0]
        r["price"] = f"{int(r['id']) % 97 + 5}.99"
    return demo_catalog(dest, picked), picked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(index_dir: Path, serving: ServingConfig | None = None) -> Iterator[str]:
    """uvicorn serving `index_dir` on a free loopback port, in a thread; yields the base URL once ready."""
    app = create_app(index_dir, serving=serving or ServingConfig(api_key=KEY))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    try:
        wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def wait_ready(base: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base}/readyz", timeout=5)
            if last.status_code == 200:
                return last.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} not ready: {last.text if last is not None else 'no answer'}")


def search_until_answered(base: str, count: int, timeout_s: float = 240.0, pause_s: float = 0.2) -> None:
    """Send `count` searches that must each return 3 hits; a worker still warming up may answer 503 until the
    deadline."""
    answered, deadline = 0, time.monotonic() + timeout_s
    while answered < count:
        response = httpx.get(f"{base}/search", params={"q": "watch", "k": 3}, timeout=60)
        if response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(pause_s)
            continue
        assert response.status_code == 200 and len(response.json()["results"]) == 3, response.text
        answered += 1


def ready_client(index_dir: Path, serving: ServingConfig | None = None) -> TestClient:
    """A started TestClient over the app of `index_dir`, once its index is loaded (the caller exits it)."""
    client = TestClient(create_app(index_dir, serving=serving or ServingConfig(api_key=KEY)))
    client.__enter__()
    for _ in range(600):
        if client.get("/readyz").status_code == 200:
            return client
        time.sleep(0.1)
    raise AssertionError(client.get("/readyz").json())
