"""The HTTP API and web page of one index directory (FastAPI). `create_app` builds it; `vitrina serve` runs it.

Every search-like response is `{"results": [{"id", "score", ...metadata}], "index_version": ...}`.
Reads are open unless `ServingConfig.open_reads` is False; per-shopper reads (`/users/{id}/recommendations`,
`/search?user=`) need the key unless `public_personalisation`; writes and admin need the API key, sent
as `X-API-Key: KEY` or `Authorization: Bearer KEY`, compared in constant time and never logged.
Requests are rate-limited per client address and per key (serving/ratelimit.py), wrong keys harder.
"""


import asyncio
import base64
import contextlib
import dataclasses
import hmac
import logging
import math
import pickle
import os
import time
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Literal
from urllib.parse import quote

from fastapi import Body, Depends, FastAPI, File, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vitrina.encoders.errors import EncoderError, ImageLoadError
from vitrina.encoders.image_io import decode_image, is_url
from vitrina.encoders.url_fetch import check_url
from vitrina.engine.data.catalog import CatalogError, metadata_key
from vitrina.engine.config import RecommendConfig, VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.event_store import EventLogError
from vitrina.engine.data.events import events_from_records
from vitrina.engine.learn.feedback import PERSONAL_DEPTH, personalise
from vitrina.engine.query.recommend import recommend
from vitrina.engine.query.search import SearchHit, clean_query
from vitrina.index.errors import IndexStoreError
from vitrina.index.filters import ProductFilter
from vitrina.index.product_index import set_search_threads
from vitrina.serving.config import ServingConfig
from vitrina.serving.images import ImageRefused, served_image
from vitrina.serving.live import IndexHolder, LiveIndex
from vitrina.serving.access_log import redact_access_log
from vitrina.serving.metrics import RequestMetrics, ServiceMetrics
from vitrina.serving.paths import EncodedProductPaths, decoded_product_id
from vitrina.serving.ratelimit import RateLimiter, RateLimitMiddleware, too_many

log = logging.getLogger("vitrina.serving")
STATIC = Path(__file__).parent / "static"
SETTINGS_ENV = "VITRINA_SERVE_SETTINGS"  # how `vitrina serve --workers N` hands its settings to each worker


class Hit(BaseModel):
    """One product: its id, its score, and the catalog's other columns."""

    model_config = ConfigDict(extra="allow")
    id: str
    score: float


class Results(BaseModel):
    results: list[Hit]
    index_version: str
    personalised: bool | None = None


class EventIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=256)
    product_id: str = Field(min_length=1, max_length=256)
    event: Literal["view", "click", "cart", "purchase"] | None = None
    timestamp: str | float = Field(description="ISO 8601 time (UTC when naive) or epoch seconds")
    weight: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


class EventsOut(BaseModel):
    accepted: int
    rejected: int
    problems: dict[str, int]
    examples: list[str]
    users: int
    products_with_vectors: int
    index_version: str
    duplicates: int = Field(0, description="events already applied before (same event id), skipped")


class ForgetOut(BaseModel):
    user_found: bool
    events_removed: int
    versions_refit: list[str]
    notes: list[str]
    index_version: str


class ReloadIn(BaseModel):
    path: str | None = Field(default=None, description="another index directory to serve (default: the current one); "
                                                     "inside the served index's folder or a --reload-root")


class ReloadOut(BaseModel):
    index_version: str
    previous_version: str | None
    path: str
    seconds: float


def create_app(index_path: str | Path, config: VitrinaConfig | None = None, serving: ServingConfig | None = None) -> FastAPI:
    """The service for one index directory; the index loads (and warms up) in the background at start."""
    config = config or VitrinaConfig(progress=False)
    serving = serving or ServingConfig()
    config = dataclasses.replace(config, encoders=dataclasses.replace(config.encoders, spin=serving.spin))
    set_search_threads(serving.search_threads)
    redact_access_log()  # access logs never print shopper ids
    metrics = ServiceMetrics(serving.metrics_dir)
    holder = IndexHolder(Path(index_path), config, serving, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def first_load() -> None:
            try:
                await holder.reload(announce=False)
            except Exception as exc:  # /readyz says why; the process stays up for /healthz
                holder.load_error = str(exc)
                log.error("could not load the index %s: %s", index_path, exc)

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

    limiter = RateLimiter(serving.rate_limit, serving.key_rate_limit, serving.wrong_key_limit, serving.api_key,
                          serving.rate_limit_storage)
    app = FastAPIOffline(  # FastAPI with /docs and /redoc served from local files (no CDN: runs offline)
        static_url="/static-docs",
        title="Vitrina", version="1", lifespan=lifespan, max_body_size=serving.max_upload_bytes,  # larger: 413
        description="Semantic product search, visually similar products and recommendations over one index.",
    )
    app.state.holder = holder
    app.state.metrics = metrics
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key (VITRINA_API_KEY)")
    bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")

    def given_key(header: str | None, credentials: HTTPAuthorizationCredentials | None) -> str | None:
        return header or (credentials.credentials if credentials is not None else None)

    async def check_key(request: Request, given: str | None, what: str) -> None:
        """_check_key, refusing with 429 an address that sent too many wrong keys lately (and counting this one)."""
        address = request.client.host if request.client else "unknown"
        if given is not None and serving.api_key is not None:
            wait = await limiter.wrong_key_wait(address)
            if wait is not None:
                body, headers = too_many(wait, "wrong API keys from this address")
                raise HTTPException(429, body["detail"], headers=headers)
        try:
            _check_key(serving.api_key, given, what)
        except HTTPException as exc:
            if exc.status_code == 401 and given is not None:
                await limiter.wrong_key(address)
            raise

    async def write_access(request: Request, header: Annotated[str | None, Depends(key_header)],
                           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        await check_key(request, given_key(header, credentials), "writes and admin")

    async def read_access(request: Request, header: Annotated[str | None, Depends(key_header)],
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not serving.open_reads:
            await check_key(request, given_key(header, credentials), "searches")

    async def personal_access(request: Request, header: Annotated[str | None, Depends(key_header)],
                              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        """Per-shopper reads (recommendations, search?user=) reveal purchases: the key, unless made public."""
        personal = request.url.path.startswith("/users/") or "user" in request.query_params
        if personal and not serving.public_personalisation and serving.open_reads:  # keyed reads: read_access checked it
            try:
                await check_key(request, given_key(header, credentials), "per-shopper reads")
            except HTTPException as exc:
                if exc.status_code in (401, 403):
                    exc.detail = f"{exc.detail}; `vitrina serve --public-personalisation` opens them to everyone"
                raise

    def live() -> LiveIndex:
        current = holder.current
        if current is None:
            why = f": {holder.load_error}" if holder.load_error else "; try again in a moment"
            raise HTTPException(503, f"the index is not loaded{why}")
        return current

    Live = Annotated[LiveIndex, Depends(live)]
    K = Annotated[int, Query(ge=1, le=serving.max_k, description="how many results")]
    Category = Annotated[list[str] | None, Query(max_length=50, description="keep these categories (any of)")]
    Brand = Annotated[list[str] | None, Query(max_length=50, description="keep these brands (any of)")]
    PriceMin = Annotated[float | None, Query(ge=0, le=1e12, description="lowest price kept")]
    PriceMax = Annotated[float | None, Query(ge=0, le=1e12, description="highest price kept")]
    ProductId = Annotated[str, BeforeValidator(decoded_product_id), PathParam(min_length=1, max_length=256)]
    read = [Depends(read_access)]
    personal_read = [Depends(read_access), Depends(personal_access)]

    app.add_middleware(EncodedProductPaths)  # ids with '/' (sent as %2F) reach /products/{id}...
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if serving.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(serving.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"], max_age=600)

    @app.exception_handler(QueryError)
    @app.exception_handler(ImageLoadError)
    @app.exception_handler(CatalogError)
    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(EventLogError)
    async def log_unwritable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)  # the server's disk, not the request

    @app.exception_handler(IndexStoreError)
    @app.exception_handler(EncoderError)
    async def index_problem(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(OSError)
    async def storage_problem(request: Request, exc: OSError) -> JSONResponse:
        """A full, read-only or failing disk: 503 with the reason, never the server's paths (those go to the log)."""
        log.error("%s %s failed on the index files: %s", request.method, request.url.path, exc)
        why = exc.strerror or type(exc).__name__
        return JSONResponse({"detail": f"the server could not read or write its index files ({why}); "
                                       "nothing was changed, try again later"}, status_code=503,
                            headers={"Retry-After": "60"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": _plain(exc.errors())}, status_code=422)

    @app.get("/search", response_model=Results, response_model_exclude_unset=True, dependencies=personal_read, summary="Search products by text")
    async def search(
        index: Live,
        q: Annotated[str, Query(min_length=1, max_length=serving.max_query_chars, description="what the shopper typed")],
        k: K = 10, category: Category = None, brand: Brand = None, price_min: PriceMin = None, price_max: PriceMax = None,
        user: Annotated[str | None, Query(min_length=1, max_length=256, description="personalise for this shopper")] = None,
        space: Literal["text", "image", "fused"] | None = None,
        mode: Literal["lexical", "dense", "hybrid"] | None = None,
    ) -> dict[str, Any]:
        session = index.session
        cleaned = clean_query(q)
        space = space or session.default_space()
        mode = mode or session.default_mode(space)
        allowed = session.allowed_rows(_product_filter(category, brand, price_min, price_max))
        vector = None if mode == "lexical" else await index.text_vector(cleaned, space)
        personal = user is not None and index.behaviour is not None
        depth = max(k, PERSONAL_DEPTH) if personal else k
        started = time.perf_counter()
        # On the event loop, not a thread: retrieval is ~2 ms of mostly GIL-holding Python and numpy,
        # and handing it to a thread pool costs more in GIL hand-offs than it frees the loop
        # (benchmarks/serving_load.py: p99 150-170 ms in threads, 86-100 ms inline at 100 req/s).
        scores, rows = session.retrieve([cleaned], depth, space, mode, None if vector is None else vector[None, :], allowed)
        metrics.index_seconds.labels(space).observe(time.perf_counter() - started)
        if personal:
            hits, personalised = personalise(session, index.behaviour, scores[0], rows[0], user, k)
            return _results(index, hits, personalised)
        return _results(index, session.hits(scores[0], rows[0], k=k), False if user is not None else None)

    @app.post("/search/image", response_model=Results, response_model_exclude_unset=True, dependencies=read, summary="Products that look like an uploaded photo")
    async def search_image(
        index: Live, file: Annotated[UploadFile, File(description="a JPEG, PNG or WebP photo")],
        k: K = 10, category: Category = None, brand: Brand = None, price_min: PriceMin = None, price_max: PriceMax = None,
        space: Literal["image", "fused"] | None = None,
    ) -> dict[str, Any]:
        session = index.session
        if "image" not in session.manifest.spaces:
            raise QueryError("this index has no image vectors; index a catalog with images to search by photo")
        data = await file.read()
        if not data:
            raise QueryError("the uploaded file is empty")
        label = f"the upload {file.filename or 'file'!r}"
        image = await run_in_threadpool(decode_image, data, label, serving.max_image_pixels, serving.max_image_aspect)
        space = space or session.default_image_space()
        allowed = session.allowed_rows(_product_filter(category, brand, price_min, price_max))
        vector = await index.image_vector(image, space)
        started = time.perf_counter()
        hits = await run_in_threadpool(session.search_vectors, space, vector[None, :], k, allowed)
        metrics.index_seconds.labels(space).observe(time.perf_counter() - started)
        return _results(index, hits[0])

    @app.get("/products/{product_id}/similar", response_model=Results, response_model_exclude_unset=True, dependencies=read, summary="Products like this one")
    async def similar(
        index: Live, product_id: ProductId, k: K = 10, category: Category = None, brand: Brand = None,
        price_min: PriceMin = None, price_max: PriceMax = None, space: Literal["image", "fused", "text"] | None = None,
    ) -> dict[str, Any]:
        _known(index, product_id)
        filter_ = _product_filter(category, brand, price_min, price_max)
        hits = await run_in_threadpool(index.session.similar_to_product, product_id, k, space, filter_)
        return _results(index, hits)

    @app.get("/products/{product_id}", dependencies=read, summary="One product's catalog data")
    async def product(index: Live, product_id: ProductId) -> dict[str, Any]:
        row = _known(index, product_id)
        metadata = _public_image(index, product_id, index.session.products.metadata(row))
        return {"id": product_id, **_clean_metadata(metadata), "index_version": index.version}

    @app.get("/products/{product_id}/image", dependencies=read, summary="One product's image",
             response_class=Response, responses={200: {"content": {"image/*": {}}}})
    async def product_image(index: Live, product_id: ProductId) -> Response:
        _known(index, product_id)
        source = index.session.image_source(product_id)
        if source is None:
            raise HTTPException(404, f"product {product_id!r} has no image")
        if is_url(source):  # a redirect only where indexing could fetch: never to the server's own network
            try:
                await run_in_threadpool(check_url, source, index.session.image_url_policy())
            except ImageLoadError:
                raise HTTPException(404, f"the image of product {product_id!r} is not served: its URL is not on a "
                                         "public address") from None
            return RedirectResponse(source)
        try:
            data, media_type = await run_in_threadpool(served_image, source, index.session.image_roots(),
                                                       config.encoders.image_max_pixels, config.encoders.image_max_aspect)
        except ImageRefused as refused:
            raise HTTPException(refused.status, f"the image of product {product_id!r} is not served: {refused.reason}") from None
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.get("/users/{user_id}/recommendations", response_model=Results, response_model_exclude_unset=True, dependencies=personal_read,
             summary="Products for one shopper (best sellers for an unknown one)")
    async def recommendations(
        index: Live, user_id: Annotated[str, PathParam(min_length=1, max_length=256)], k: K = 10,
        include_seen: bool = False,
    ) -> dict[str, Any]:
        if index.behaviour is None:
            raise HTTPException(404, f"no recommendations yet: {index.behaviour_why} (or POST /events)")
        hits, personalised = await run_in_threadpool(
            recommend, index.session, user_id, k, include_seen, RecommendConfig(), index.behaviour, index.popular)
        return _results(index, hits, personalised)

    @app.get("/filters", dependencies=read, summary="What the category and brand filters can take, and the price range")
    async def filters(index: Live) -> dict[str, Any]:
        columns = index.session.filters
        prices = columns.price_range()
        return {
            "category": columns.values("category"), "brand": columns.values("brand"),
            "price": {"min": prices[0], "max": prices[1]} if prices else None,
            "columns": columns.columns, "index_version": index.version,
        }

    @app.post("/events", response_model=EventsOut, dependencies=[Depends(write_access)],
              summary="Feedback events (views, clicks, carts, purchases) folded into the behaviour vectors")
    async def events(index: Live, body: EventsIn) -> dict[str, Any]:
        if len(body.events) > serving.max_events:
            raise QueryError(f"{len(body.events)} events in one request; send at most {serving.max_events}")
        records = [e.model_dump(exclude_none=True) for e in body.events]
        log_ = events_from_records(records, index.session.products.rows_by_id)
        # In memory: logged (fsync'd before this answer) and folded in; snapshots and fused vectors
        # are refreshed in the background (IndexHolder.keep_shoppers_current), never per request.
        added = await run_in_threadpool(index.record, log_)
        metrics.events.labels("accepted").inc(len(log_))
        metrics.events.labels("rejected").inc(log_.problems.total)
        return {
            "accepted": len(log_), "rejected": log_.problems.total, "problems": dict(log_.problems.counts),
            "examples": log_.problems.examples, "users": added.users,
            "products_with_vectors": added.products_with_vectors, "index_version": index.version,
            "duplicates": added.duplicates,
        }

    @app.delete("/users/{user_id}", response_model=ForgetOut, dependencies=[Depends(write_access)],
                summary="Forget a shopper: their events, their vector and their part in product vectors, in every kept version")
    async def forget_user(index: Live, user_id: Annotated[str, PathParam(min_length=1, max_length=256)]) -> dict[str, Any]:
        from vitrina.engine.learn.shoppers import forget

        gone = await run_in_threadpool(forget, index.path, user_id, config)
        await run_in_threadpool(index.load_behaviour)
        current = index
        if gone.found and index.trained:  # the fused vectors were recomputed: a new index version
            await holder.refresh_fused(index)
            current = holder.current or index
        return {**gone.to_json(), "index_version": current.version}

    @app.post("/admin/reload", response_model=ReloadOut, dependencies=[Depends(write_access)],
              summary="Load an index version and swap it in atomically while serving")
    async def reload(body: Annotated[ReloadIn | None, Body()] = None) -> dict[str, Any]:
        # One answer whether the path is missing, outside the allowed folders, not an index or damaged (the
        # server log says which): the API must not tell which server paths exist.
        path = body.path if body else None
        refused = HTTPException(422, "kept serving the current version; the index did not load (it is missing, not an "
                                     "index, damaged or outside the folders reloads may use; the server log says why)")
        if path is not None and not _reloadable(Path(path), holder.path, serving.reload_roots):
            log.warning("refused to reload %s: outside the folders reloads may use", path)
            raise refused
        try:
            swap = await holder.reload(path)
        except (IndexStoreError, EncoderError, OSError, ValueError) as exc:
            log.warning("could not reload %s: %s", path or holder.path, exc)
            raise refused from None
        return swap.__dict__

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="An index is loaded and warmed up", responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        current = holder.current
        if current is None:
            return JSONResponse({"status": "loading" if holder.load_error is None else "failed",
                                 "detail": holder.load_error}, status_code=503)
        return JSONResponse({"status": "ready", "index_version": current.version, "products": len(current.session.products)})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _product_filter(category: list[str] | None, brand: list[str] | None, price_min: float | None,
                    price_max: float | None) -> ProductFilter | None:
    """The filter of a request's query parameters (empty values ignored), or None for no filter."""
    filter_ = ProductFilter(tuple(c for c in category or () if c), tuple(b for b in brand or () if b), price_min, price_max)
    return None if filter_.is_empty else filter_


def _check_key(expected: str | None, given: str | None, what: str) -> None:
    if expected is None:
        raise HTTPException(403, f"{what} are disabled: this server has no API key (set VITRINA_API_KEY and restart)")
    if given is None or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(401, f"{what} need the API key, sent as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                            headers={"WWW-Authenticate": "Bearer"})


def _reloadable(path: Path, served: Path, roots: tuple[str, ...]) -> bool:
    """Whether `path` lies inside a folder reloads may use: `roots`, or else the served path's parent."""
    allowed = [Path(r) for r in roots] or [Path(served).absolute().parent]
    target = path.absolute().resolve()
    return any(target.is_relative_to(root.absolute().resolve()) for root in allowed)


def _known(index: LiveIndex, product_id: str) -> int:
    if product_id not in index.session.products:
        raise HTTPException(404, f"unknown product id {product_id!r}")
    return index.session.products.row_of(product_id)


def _results(index: LiveIndex, hits: list[SearchHit], personalised: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"results": [_clean_metadata(_public_image(index, h.id, h.to_json())) for h in hits],
                           "index_version": index.version}
    if personalised is not None:
        out["personalised"] = personalised
    return out


def _public_image(index: LiveIndex, product_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with a local image path replaced by the image's URL on this server (http(s) URLs kept)."""
    field = index.session.manifest.catalog.get("image_field")
    key = metadata_key(field) if field else None
    value = record.get(key) if key else None
    if not isinstance(value, str) or not value.strip() or is_url(value.strip()):
        return record
    return {**record, key: f"/products/{quote(product_id, safe='')}/image"}


def _clean_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values: NaN and infinities (which JSON cannot carry) become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def _plain(errors: list[dict]) -> list[dict]:
    """Validation errors without the raw input objects (bytes, files) that JSON cannot carry."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))} for e in errors]


def settings_for_workers(index_path: Path, config: VitrinaConfig, serving: ServingConfig) -> str:
    """The app's settings as one environment value, for `app_from_environment` in each worker."""
    return base64.b64encode(pickle.dumps((str(index_path), config, serving))).decode("ascii")


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker, built from the settings `vitrina serve` put in VITRINA_SERVE_SETTINGS."""
    index_path, config, serving = pickle.loads(base64.b64decode(os.environ[SETTINGS_ENV]))  # noqa: S301 (our own parent)
    return create_app(index_path, config, serving)
