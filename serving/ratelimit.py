"""Rate limits (the `limits` library, sliding-window counters): per client address, per API key, and a
much stricter one for wrong API keys per address, so that guessing the key is hopeless.

A request carrying the right key counts against the key's limits only; any other request against its
client address's. Health, readiness, metrics, the page, its static files and the API docs are never
limited (probes and a browser loading the page must not be turned away). With the default in-memory
storage every worker process keeps its own counts; a shared storage (`redis://HOST:PORT`, needs
`pip install limits[redis]`) makes them global.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import threading
import time
from typing import Any, Awaitable, Callable

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.concurrency import run_in_threadpool

from vitrina.engine.errors import QueryError

UNLIMITED_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
                             "/openapi.json", "/favicon.ico"})
UNLIMITED_PREFIXES = ("/static/", "/static-docs/")
OFF = ("", "off", "none", "0")


SWEEP_S = 2.0  # how often expired counters are dropped from memory


class RateLimitError(QueryError):
    """A rate-limit setting that cannot be parsed or a storage that cannot be used."""


class SweepingMemoryStorage(MemoryStorage):
    """limits' in-memory storage, dropping expired counters every SWEEP_S instead of every 10 ms.

    Counters expire lazily when read either way (the sweep only frees memory); the library's 10 ms
    sweep walks every counter, which with 20,000 client addresses costs 16 ms per pass: a whole core.
    """

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook (name-mangled)
        if not self.timer.is_alive():
            self.timer = threading.Timer(SWEEP_S, self._MemoryStorage__expire_events)
            self.timer.daemon = True
            self.timer.start()


def client_id(host: str) -> str:
    """The identity limits count against: the address, or its /64 network for IPv6 (one host holds a whole /64)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def parse_limits(text: str | None, what: str) -> list[RateLimitItem]:
    """'50/second;1000/minute' as limit items; None, '' or 'off' mean no limit."""
    if text is None or text.strip().lower() in OFF:
        return []
    try:
        return parse_many(text)
    except ValueError:
        raise RateLimitError(f"{what}: cannot read {text!r}; write limits like '50/second;1000/minute', or 'off'") from None


class RateLimiter:
    """Counts requests per client address, per key and failed key checks per address; says how long to wait."""

    def __init__(self, per_address: str | None, per_key: str | None, wrong_key: str | None,
                 api_key: str | None, storage: str = "memory://") -> None:
        self.per_address = parse_limits(per_address, "rate limit per address")
        self.per_key = parse_limits(per_key, "rate limit per key")
        self.wrong_keys = parse_limits(wrong_key, "limit on wrong keys")
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.key_id = "key:" + hashlib.sha256(self.api_key).hexdigest()[:16] if self.api_key else ""
        try:
            backend = SweepingMemoryStorage() if storage == "memory://" else storage_from_string(storage)
            self.limiter = SlidingWindowCounterRateLimiter(backend)
        except (ConfigurationError, NotImplementedError, ValueError) as exc:
            raise RateLimitError(f"rate limit storage {storage!r}: {exc}") from None
        self.in_memory = storage.startswith("memory://")

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """In memory: inline (microseconds); a networked storage: in a thread, off the event loop."""
        return function(*args) if self.in_memory else await run_in_threadpool(function, *args)

    async def _wait(self, items: list[RateLimitItem], identity: str, consume: bool) -> float | None:
        """Seconds to wait when one of `items` is used up for `identity` (after counting one more hit if `consume`)."""
        for item in items:
            allowed = await self._call(self.limiter.hit if consume else self.limiter.test, item, identity)
            if not allowed:
                stats = await self._call(self.limiter.get_window_stats, item, identity)
                return max(1.0, stats.reset_time - time.time())
        return None

    def has_key(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the request carries the right API key (X-API-Key or Authorization: Bearer)."""
        if self.api_key is None:
            return False
        for name, value in headers:
            if name == b"x-api-key" or (name == b"authorization" and value[:7].lower() == b"bearer "):
                given = value if name == b"x-api-key" else value[7:].strip()
                if hmac.compare_digest(given, self.api_key):
                    return True
        return False

    async def request_wait(self, address: str, headers: list[tuple[bytes, bytes]]) -> float | None:
        """Count one request; seconds to wait if it is over its key's or its address's limits."""
        if self.has_key(headers):
            return await self._wait(self.per_key, self.key_id, consume=True)
        return await self._wait(self.per_address, "addr:" + client_id(address), consume=True)

    async def wrong_key_wait(self, address: str) -> float | None:
        """Seconds this address must wait before its next key check, after too many wrong keys."""
        return await self._wait(self.wrong_keys, "wrong-key:" + client_id(address), consume=False)

    async def wrong_key(self, address: str) -> None:
        """Count one wrong key from this address."""
        await self._wait(self.wrong_keys, "wrong-key:" + client_id(address), consume=True)


def too_many(wait_s: float, what: str) -> tuple[dict[str, str], dict[str, str]]:
    """The body and headers of a 429 answer."""
    seconds = math.ceil(wait_s)
    return {"detail": f"too many {what}; retry in {seconds} s"}, {"Retry-After": str(seconds)}


class RateLimitMiddleware:
    """ASGI middleware answering 429 with Retry-After to requests over their limits (plain ASGI: no extra task)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNLIMITED_PATHS or path.startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = await self.limiter.request_wait(client[0] if client else "unknown", scope.get("headers", []))
        if wait is None:
            await self.app(scope, receive, send)
            return
        body, headers = too_many(wait, "requests")
        raw = json.dumps(body).encode("utf-8")
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
            (b"retry-after", headers["Retry-After"].encode())]})
        await send({"type": "http.response.body", "body": raw})
