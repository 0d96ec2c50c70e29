"""Prometheus metrics of one service: requests, latencies, encoder and index timings, index version.

Each app gets its own registry. Under `vitrina serve --workers N` the CLI points prometheus_client's
PROMETHEUS_MULTIPROC_DIR at a fresh folder (`ServingConfig.metrics_dir`): the workers write their
values there and /metrics adds up all workers' files.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess, values

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vitrina_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r)
        self.latency = Histogram("vitrina_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.encoder_seconds = Histogram("vitrina_encoder_seconds", "Time of one encoder batch", ["modality"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.encoder_batch = Histogram("vitrina_encoder_batch_size", "Queries encoded together", ["modality"],
                                       buckets=BATCH_BUCKETS, registry=r)
        self.index_seconds = Histogram("vitrina_index_search_seconds", "Retrieval time (FAISS and BM25) by space",
                                       ["space"], buckets=LATENCY_BUCKETS, registry=r)
        self.dense_seconds = Histogram("vitrina_dense_search_seconds", "Time of one micro-batch's dense search by space",
                                       ["space"], buckets=LATENCY_BUCKETS, registry=r)
        self.dense_batch = Histogram("vitrina_dense_batch_size", "Queries whose dense leg was searched together", ["space"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.cache = Counter("vitrina_query_cache", "Query embedding cache lookups", ["result"], registry=r)
        self.index_info = Gauge("vitrina_index_version_info", "The index version being served (value 1)",
                                ["version"], registry=r, multiprocess_mode="liveall")
        self.products = Gauge("vitrina_index_products", "Products in the index being served", registry=r,
                              multiprocess_mode="liveall")
        self.reloads = Counter("vitrina_index_reloads", "Index reloads by result", ["result"], registry=r)
        self.events = Counter("vitrina_events", "Feedback events received by result", ["result"], registry=r)

    def serving(self, version: str, products: int) -> None:
        """Record the index version now answering (the previous one's series is removed)."""
        self.index_info.clear()
        self.index_info.labels(version=version).set(1)
        self.products.set(products)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (all workers' when running under several)."""
        if self.multiprocess_dir:
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware counting every HTTP request by route, method and status, and timing it.

    A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which runs each request in an
    extra task with memory streams: measurable latency on a busy 2-core server.
    """

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what a request that raised before answering counts as

        async def send_observed(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")  # the router writes the matched route here
            self.metrics.requests.labels(name, scope["method"], str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)


def use_multiprocess_values() -> None:
    """Make prometheus_client keep values in PROMETHEUS_MULTIPROC_DIR files when that was set after it was imported
    (it chooses at import; workers forked by `vitrina serve --workers N` inherit the parent's choice)."""
    values.ValueClass = values.get_value_class()
