"""The HTTP API and web page of one index directory (FastAPI). `create_app` builds it; `vitrina serve` runs it
(serving/server.py).

Every search-like response is `{"results": [{"id", "score", ...metadata}], "index_version": ...}`.
Reads are open unless `ServingConfig.open_reads` is False; per-shopper reads (`/users/{id}/recommendations`,
`/search?user=`) need the key unless `public_personalisation`; writes and admin need the API key, sent
as `X-API-Key: KEY` or `Authorization: Bearer KEY`, compared in constant time and never logged.
Requests are rate-limited per client address and per key (serving/ratelimit.py), wrong keys harder.
The routes live in serving/routers/ (one module per resource), what they share in serving/dependencies.py.
"""

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import pickle
from pathlib import Path
from typing import AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from vitrina.engine.config import VitrinaConfig
from vitrina.index.dense_batch import set_blas_threads
from vitrina.index.product_index import set_search_threads
from vitrina.serving.access_log import redact_access_log
from vitrina.serving.config import ServingConfig
from vitrina.serving.dependencies import Dependencies
from vitrina.serving.errors import add_error_handlers
from vitrina.serving.live import IndexHolder
from vitrina.serving.metrics import RequestMetrics, ServiceMetrics
from vitrina.serving.paths import EncodedProductPaths
from vitrina.serving.ratelimit import RateLimiter, RateLimitMiddleware
from vitrina.serving.routers import admin, events, filters, health, page, products, search, users

log = logging.getLogger("vitrina.serving")
STATIC = page.STATIC
SETTINGS_ENV = "VITRINA_SERVE_SETTINGS"  # how `vitrina serve --workers N` hands its settings to each worker


def create_app(index_path: str | Path, config: VitrinaConfig | None = None, serving: ServingConfig | None = None) -> FastAPI:
    """The service for one index directory; the index loads (and warms up) in the background at start."""
    config = config or VitrinaConfig(progress=False)
    serving = serving or ServingConfig()
    config = dataclasses.replace(config, encoders=dataclasses.replace(config.encoders, spin=serving.spin))
    set_search_threads(serving.search_threads)
    set_blas_threads(serving.search_threads)
    redact_access_log()  # access logs never print shopper ids
    metrics = ServiceMetrics(serving.metrics_dir)
    holder = IndexHolder(Path(index_path), config, serving, metrics)
    limiter = RateLimiter(serving.rate_limit, serving.key_rate_limit, serving.wrong_key_limit, serving.api_key,
                          serving.rate_limit_storage)
    app = FastAPIOffline(  # FastAPI with /docs and /redoc served from local files (no CDN: runs offline)
        static_url="/static-docs",
        title="Vitrina", version="1", lifespan=lifespan(holder), max_body_size=serving.max_upload_bytes,  # larger: 413
        description="Semantic product search, visually similar products and recommendations over one index.",
    )
    app.state.holder = holder
    app.state.metrics = metrics

    app.add_middleware(EncodedProductPaths)  # ids with '/' (sent as %2F) reach /products/{id}...
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if serving.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(serving.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"], max_age=600)
    add_error_handlers(app)

    deps = Dependencies(serving, limiter)
    for resource in (search, products, users, filters, events, admin, page):
        app.include_router(resource.router(deps))
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def lifespan(holder: IndexHolder) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Load the index in the background and follow reloads and events while serving; snapshot and close at the end."""

    @contextlib.asynccontextmanager
    async def serve(app: FastAPI) -> AsyncIterator[None]:
        async def first_load() -> None:
            try:
                if holder.current is not None:  # loaded before the workers forked (serving.prefork)
                    await holder.adopt_preloaded()
                    return
                await holder.reload(announce=False)
            except Exception as exc:  # /readyz says why; the process stays up for /healthz
                holder.load_error = str(exc)
                log.error("could not load the index %s: %s", holder.path, exc)

        tasks = [asyncio.create_task(first_load()), asyncio.create_task(holder.follow_signal()),
                 asyncio.create_task(holder.keep_shoppers_current())]
        yield
        for task in tasks:
            task.cancel()
        if holder.current is not None:
            if holder.current.shoppers is not None and holder.current.shoppers.pending:
                try:  # the log already holds every event; the snapshot only shortens the next start
                    await holder.snapshot(holder.current, serve_refreshed=False)
                except Exception as exc:
                    log.error("could not snapshot the behaviour state at shutdown: %s", exc)
            holder.current.close()

    return serve


def settings_for_workers(index_path: Path, config: VitrinaConfig, serving: ServingConfig) -> str:
    """The app's settings as one environment value, for `app_from_environment` in each worker."""
    return base64.b64encode(pickle.dumps((str(index_path), config, serving))).decode("ascii")


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker, built from the settings `vitrina serve` put in VITRINA_SERVE_SETTINGS."""
    index_path, config, serving = pickle.loads(base64.b64decode(os.environ[SETTINGS_ENV]))  # noqa: S301 (our own parent)
    return create_app(index_path, config, serving)
