"""/search (text) and /search/image (a photo): the engine's search composition over the live index.

The query is encoded in the live index's micro-batch (and cache), then run with its behaviour model.
"""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from vitrina.encoders.image_io import decode_image
from vitrina.engine.errors import QueryError
from vitrina.engine.query.compose import MAX_FACETS, dense_depth, plan_image_search, plan_text_search, run_image_search, run_text_search
from vitrina.engine.query.filters import MAX_VALUE_CHARS, parse_where
from vitrina.engine.query.hits import MAX_K
from vitrina.serving.dependencies import Brand, Category, Dependencies, Live, PriceMax, PriceMin, Where, request_filter
from vitrina.serving.responses import results
from vitrina.serving.schemas import Results

User = Annotated[str | None, Query(min_length=1, max_length=256, description="personalise for this shopper")]
Facets = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_VALUE_CHARS)]] | None,
    Query(max_length=MAX_FACETS, description="count these catalog columns' values (and the price range) over the "
                                             "matched set: all lexical matches plus the dense candidates above "
                                             "the relevance floor"),
]
Offset = Annotated[int, Query(ge=0, lt=MAX_K, description=f"skip this many results, for paging (offset + k at most {MAX_K})")]


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    K, Text, serving = deps.K, deps.Text, deps.serving

    @routes.get("/search", response_model=Results, response_model_exclude_unset=True, dependencies=deps.personal_read,
                summary="Search products by text")
    async def search(
        index: Live, q: Text, k: K = 10, category: Category = None, brand: Brand = None, price_min: PriceMin = None,
        price_max: PriceMax = None, user: User = None, space: Literal["text", "image", "fused"] | None = None,
        mode: Literal["lexical", "dense", "hybrid"] | None = None, where: Where = None, facets: Facets = None,
        sort: Literal["relevance", "price_asc", "price_desc"] = "relevance", offset: Offset = 0,
    ) -> dict[str, Any]:
        plan = plan_text_search(index.session, q, k, space, mode, where=parse_where(where or ()), user=user,
                                product_filter=request_filter(category, brand, price_min, price_max),
                                facets=facets, sort=sort, offset=offset)
        vector, dense = None, None
        if plan.needs_vectors:  # encoded in the micro-batch, whose dense search runs there too (one FAISS call)
            vector, dense = await index.text_query((plan.dense_queries or plan.queries)[0], plan.space,
                                                   dense_depth(index.session, plan))
        started = time.perf_counter()
        # The rest on the event loop, not a thread: it is ~1-2 ms of mostly GIL-holding Python and numpy,
        # and handing it to a thread pool costs more in GIL hand-offs than it frees the loop
        # (benchmarks/serving_load.py: p99 150-170 ms in threads, 86-100 ms inline at 100 req/s).
        answer = run_text_search(index.session, plan, None if vector is None else vector[None, :], index.behaviour,
                                 dense=dense)[0]
        index.metrics.index_seconds.labels(plan.space).observe(time.perf_counter() - started)
        out = results(index, answer, answer.personalised, answer.corrected_query)
        out = {**out, **answer.facets_json()} if answer.facets is not None else out
        out = {**out, "rules_fired": answer.rules_fired} if answer.rules_fired else out
        return {**out, "suggestions": answer.suggestions} if answer.suggestions else out

    @routes.post("/search/image", response_model=Results, response_model_exclude_unset=True, dependencies=deps.read,
                 summary="Products that look like an uploaded photo")
    async def search_image(
        index: Live, file: Annotated[UploadFile, File(description="a JPEG, PNG or WebP photo")],
        k: K = 10, category: Category = None, brand: Brand = None, price_min: PriceMin = None, price_max: PriceMax = None,
        space: Literal["image", "fused"] | None = None, where: Where = None,
    ) -> dict[str, Any]:
        session = index.session
        if "image" not in session.manifest.spaces:
            raise QueryError("this index has no image vectors; index a catalog with images to search by photo")
        data = await file.read()
        if not data:
            raise QueryError("the uploaded file is empty")
        label = f"the upload {file.filename or 'file'!r}"
        image = await run_in_threadpool(decode_image, data, label, serving.max_image_pixels, serving.max_image_aspect)
        plan = plan_image_search(session, k, space, where=parse_where(where or ()),
                                 product_filter=request_filter(category, brand, price_min, price_max))
        vector = await index.image_vector(image, plan.space)
        started = time.perf_counter()
        hits = await run_in_threadpool(run_image_search, session, plan, (), vector[None, :])
        index.metrics.index_seconds.labels(plan.space).observe(time.perf_counter() - started)
        return results(index, hits[0])

    return routes
