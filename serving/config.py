"""ServingConfig: the HTTP service's own settings (the engine's come in a VitrinaConfig beside it)."""

from __future__ import annotations

import os
import re

from vitrina.engine.errors import QueryError
from dataclasses import dataclass, field

from vitrina.serving.ratelimit import RateLimitError, parse_limits

API_KEY_ENV = "VITRINA_API_KEY"


class ServingConfigError(QueryError):
    """A serving setting out of range."""


@dataclass(frozen=True)
class Supervision:
    """How `vitrina serve --workers N` replaces a worker that dies (killed, out of memory, crashed)."""

    restart_delay_s: float = 0.5  # back-off before restarting a worker that died at start; doubles each time
    max_restart_delay_s: float = 30.0
    start_window_s: float = 10.0  # a worker that dies sooner than this after it was forked died "at start"
    max_start_failures: int = 5  # a worker slot dying at start this many times in a row: stop all, exit with an error
    stop_timeout_s: float = 30.0  # after SIGTERM, workers still running this long after are killed


@dataclass(frozen=True)
class ServingConfig:
    """api_key: needed for writes (POST /events) and admin (POST /admin/reload); None disables them.
    open_reads: searches need no key when True (else the same key as writes).
    public_personalisation: per-shopper reads (/users/{id}/recommendations, search?user=) need no key
    when True; by default they need it, since they reveal what a shopper bought.
    rate_limit, key_rate_limit, wrong_key_limit: 'N/second;M/minute' strings (None or 'off': no limit),
    per client address, per API key, and for wrong keys per address; counted in rate_limit_storage.
    """

    api_key: str | None = field(default=None, repr=False)  # never printed or logged
    open_reads: bool = True
    max_k: int = 100
    max_query_chars: int = 512
    max_upload_bytes: int = 10 * 2**20  # bodies above this get 413
    max_image_pixels: int = 25_000_000  # decompression bombs above this get 422
    max_image_aspect: float = 20.0  # uploads longer than 20 times their width (or wider than tall) get 422
    max_events: int = 10_000  # per POST /events
    batch_size: int = 32  # queries encoded together at most
    batch_wait_ms: float = 0.0  # how long a lone query waits for company (0: batches form from the queries
    # that arrive while the encoder is busy, which is enough under load and adds nothing when idle)
    cache_size: int = 10_000  # query embeddings kept (LRU); 0 disables the cache
    search_stage: bool | None = None  # the batch's dense search on a thread of its own, beside the encoder (True), or
    # on the encoder thread after each batch (False); None: on its own thread where a space is searched exactly over
    # FLAT_MAX (30,000) vectors or more, where one query's search costs milliseconds (else the hand-off costs more)
    search_threads: int | None = 1  # FAISS and BLAS threads per search (None: their default, every core)
    spin: bool = False  # let ONNX Runtime's idle threads spin (steals cores from concurrent requests)
    metrics_dir: str | None = None  # several workers: where they share metrics (PROMETHEUS_MULTIPROC_DIR)
    reload_signal: str | None = None  # several workers: a file whose change tells each to reload
    reload_poll_s: float = 1.0
    supervision: Supervision = field(default_factory=Supervision)
    public_personalisation: bool = False
    rate_limit: str | None = "100/second;3000/minute"  # per client address, requests without the key
    key_rate_limit: str | None = "1000/second"  # requests with the right key
    wrong_key_limit: str | None = "10/minute"  # wrong keys per address; then 429 for any key check
    rate_limit_storage: str = "memory://"  # per worker process; redis://HOST:PORT to share between workers
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API (none: no CORS headers)
    header_timeout_s: float = 10.0  # a connection whose request headers take longer is closed
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    reload_roots: tuple[str, ...] = ()  # folders POST /admin/reload may load from (default: the served path's parent)
    # The search page (serving/display.py): the columns a card shows, the first as its title (empty: found
    # from the catalog's columns), the currency its prices are in (ISO 4217), and the columns offered as facet
    # checkboxes (None: low-cardinality columns found from the catalog; empty: none).
    display_fields: tuple[str, ...] = ()
    currency: str = "USD"
    facet_fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and len(self.api_key) < 8:
            raise ServingConfigError("the API key must be at least 8 characters long")
        for name in ("max_k", "max_query_chars", "max_upload_bytes", "max_image_pixels", "max_events", "batch_size"):
            if getattr(self, name) < 1:
                raise ServingConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_image_aspect < 1:
            raise ServingConfigError(f"max_image_aspect must be at least 1, got {self.max_image_aspect}")
        if self.batch_wait_ms < 0 or self.cache_size < 0:
            raise ServingConfigError("batch_wait_ms and cache_size must not be negative")
        if not (self.header_timeout_s > 0 and self.keep_alive_timeout_s > 0):
            raise ServingConfigError("the header and keep-alive timeouts must be positive")
        try:
            for name in ("rate_limit", "key_rate_limit", "wrong_key_limit"):
                parse_limits(getattr(self, name), f"{name} (--{name.replace('_', '-')})")
        except RateLimitError as exc:
            raise ServingConfigError(str(exc)) from None
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ServingConfigError(f"currency (--currency) {self.currency[:20]!r} is not an ISO 4217 code such as USD, EUR or GBP")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ServingConfigError(f"CORS origin {origin!r}: write it as http(s)://HOST[:PORT] or '*'")

    @classmethod
    def with_environment_key(cls, **settings: object) -> "ServingConfig":
        """Settings with the API key taken from VITRINA_API_KEY when none is given (the one place it is read)."""
        if settings.get("api_key") is None:
            settings["api_key"] = os.environ.get(API_KEY_ENV) or None
        return cls(**settings)  # type: ignore[arg-type]
