"""What the routers share: the live index, API-key checks, and the common query parameters.

`live`, `holder` and `service_metrics` answer from `app.state` (set by `create_app`). The parameter types carry
the bounds a ServingConfig sets (most results, longest query), so `Dependencies` builds them per app.
"""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path as PathParam, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, StringConstraints

from vitrina.engine.query.filters import MAX_VALUE_CHARS, MAX_WHERE_ITEMS
from vitrina.index.filters import ProductFilter
from vitrina.serving.config import ServingConfig
from vitrina.serving.live import IndexHolder, LiveIndex
from vitrina.serving.metrics import ServiceMetrics
from vitrina.serving.paths import decoded_product_id
from vitrina.serving.ratelimit import RateLimiter, too_many

key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key (VITRINA_API_KEY)")
bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")


def holder(request: Request) -> IndexHolder:
    """The app's IndexHolder: the version served now, and the one place that swaps it."""
    return request.app.state.holder


def service_metrics(request: Request) -> ServiceMetrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


def live(request: Request) -> LiveIndex:
    """The index version that answers this request (503 while none is loaded)."""
    index_holder = holder(request)
    current = index_holder.current
    if current is None:
        why = f": {index_holder.load_error}" if index_holder.load_error else "; try again in a moment"
        raise HTTPException(503, f"the index is not loaded{why}")
    return current


Live = Annotated[LiveIndex, Depends(live)]
Holder = Annotated[IndexHolder, Depends(holder)]
Metrics = Annotated[ServiceMetrics, Depends(service_metrics)]
ProductId = Annotated[str, BeforeValidator(decoded_product_id), PathParam(min_length=1, max_length=256)]
UserId = Annotated[str, PathParam(min_length=1, max_length=256)]
Category = Annotated[list[str] | None, Query(max_length=50, description="keep these categories (any of)")]
Brand = Annotated[list[str] | None, Query(max_length=50, description="keep these brands (any of)")]
PriceMin = Annotated[float | None, Query(ge=0, le=1e12, description="lowest price kept")]
PriceMax = Annotated[float | None, Query(ge=0, le=1e12, description="highest price kept")]
Where = Annotated[
    list[Annotated[str, StringConstraints(max_length=2 * MAX_VALUE_CHARS)]] | None,
    Query(max_length=MAX_WHERE_ITEMS, description="keep products whose catalog column FIELD=VALUE or FIELD:VALUE (the same FIELD "
                                                  "repeated: any of), FIELD>=X or FIELD<=Y (numbers)"),
]


def request_filter(category: list[str] | None, brand: list[str] | None, price_min: float | None,
                   price_max: float | None) -> ProductFilter | None:
    """The filter of a request's category, brand and price parameters (empty values ignored), or None for none."""
    filter_ = ProductFilter(tuple(c for c in category or () if c), tuple(b for b in brand or () if b), price_min, price_max)
    return None if filter_.is_empty else filter_


class Dependencies:
    """One app's key checks (`read`, `personal_read`, `write`: route dependencies) and its bounded parameters."""

    def __init__(self, serving: ServingConfig, limiter: RateLimiter) -> None:
        self.serving = serving
        self.limiter = limiter
        self.K = Annotated[int, Query(ge=1, le=serving.max_k, description="how many results")]
        self.Text = Annotated[str, Query(min_length=1, max_length=serving.max_query_chars, description="what the shopper typed")]
        self.read = [Depends(self.read_access)]
        self.personal_read = [Depends(self.read_access), Depends(self.personal_access)]
        self.write = [Depends(self.write_access)]

    async def check_key(self, request: Request, given: str | None, what: str) -> None:
        """check_key, refusing with 429 an address that sent too many wrong keys lately (and counting this one)."""
        address = request.client.host if request.client else "unknown"
        if given is not None and self.serving.api_key is not None:
            wait = await self.limiter.wrong_key_wait(address)
            if wait is not None:
                body, headers = too_many(wait, "wrong API keys from this address")
                raise HTTPException(429, body["detail"], headers=headers)
        try:
            check_key(self.serving.api_key, given, what)
        except HTTPException as exc:
            if exc.status_code == 401 and given is not None:
                await self.limiter.wrong_key(address)
            raise

    async def write_access(self, request: Request, header: Annotated[str | None, Depends(key_header)],
                           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        await self.check_key(request, given_key(header, credentials), "writes and admin")

    async def read_access(self, request: Request, header: Annotated[str | None, Depends(key_header)],
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not self.serving.open_reads:
            await self.check_key(request, given_key(header, credentials), "searches")

    async def personal_access(self, request: Request, header: Annotated[str | None, Depends(key_header)],
                              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        """Per-shopper reads (recommendations, search?user=) reveal purchases: the key, unless made public."""
        serving = self.serving
        personal = request.url.path.startswith("/users/") or "user" in request.query_params
        if personal and not serving.public_personalisation and serving.open_reads:  # keyed reads: read_access checked it
            try:
                await self.check_key(request, given_key(header, credentials), "per-shopper reads")
            except HTTPException as exc:
                if exc.status_code in (401, 403):
                    exc.detail = f"{exc.detail}; `vitrina serve --public-personalisation` opens them to everyone"
                raise


def given_key(header: str | None, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return header or (credentials.credentials if credentials is not None else None)


def check_key(expected: str | None, given: str | None, what: str) -> None:
    """Nothing when `given` is the key (compared in constant time); else 403 (no key set) or 401."""
    if expected is None:
        raise HTTPException(403, f"{what} are disabled: this server has no API key (set VITRINA_API_KEY and restart)")
    if given is None or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(401, f"{what} need the API key, sent as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
                            headers={"WWW-Authenticate": "Bearer"})
