"""/products/{id}: one product's data, its image, the products like it, and those bought with it."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_io import is_url
from vitrina.encoders.url_fetch import check_url
from vitrina.engine.query.bought_together import bought_together
from vitrina.engine.query.filters import parse_where
from vitrina.serving.dependencies import (Brand, Category, Dependencies, Live, PriceMax, PriceMin, ProductId, Where,
                                          request_filter)
from vitrina.serving.images import ImageRefused, served_image
from vitrina.serving.responses import clean_metadata, known, public_image, results
from vitrina.serving.schemas import BoughtTogetherResults, Results

# The marker keeps this type apart from /search's equal Literal (typing caches `X | None` by equality, which
# ignores the order of a Literal's values), so the schema lists the spaces in this order.
ImageNumber = Annotated[int, Query(ge=0, le=1000, description="which of the product's images (0: the first), "
                                                                "where products hold several")]
SimilarSpace = Annotated[Literal["image", "fused", "text"], "the space of products like this one"] | None


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    K = deps.K

    @routes.get("/products/{product_id}/similar", response_model=Results, response_model_exclude_unset=True,
                dependencies=deps.read, summary="Products like this one")
    async def similar(
        index: Live, product_id: ProductId, k: K = 10, category: Category = None, brand: Brand = None,
        price_min: PriceMin = None, price_max: PriceMax = None, space: SimilarSpace = None,
        where: Where = None,
    ) -> dict[str, Any]:
        known(index, product_id)
        filter_, conditions = request_filter(category, brand, price_min, price_max), parse_where(where or ())
        hits = await run_in_threadpool(lambda: index.session.similar_to_product(product_id, k, space, filter_, where=conditions))
        return results(index, hits)

    @routes.get("/products/{product_id}/bought-together", response_model=BoughtTogetherResults,
                response_model_exclude_unset=True, dependencies=deps.read,
                summary="Products frequently bought together with this one (co-purchases, then similar products)")
    async def bought_with(index: Live, product_id: ProductId, k: K = 10, where: Where = None) -> dict[str, Any]:
        known(index, product_id)
        conditions = parse_where(where or ())
        hits = await run_in_threadpool(lambda: bought_together(index.session, index.behaviour, product_id, k, where=conditions))
        return results(index, hits)

    @routes.get("/products/{product_id}", dependencies=deps.read, summary="One product's catalog data")
    async def product(index: Live, product_id: ProductId) -> dict[str, Any]:
        row = known(index, product_id)
        metadata = public_image(index, product_id, index.session.products.metadata(row))
        return {"id": product_id, **clean_metadata(metadata), "index_version": index.version}

    @routes.get("/products/{product_id}/image", dependencies=deps.read, summary="One product's image",
                response_class=Response, responses={200: {"content": {"image/*": {}}}})
    async def product_image(index: Live, product_id: ProductId, n: ImageNumber = 0) -> Response:
        known(index, product_id)
        source = index.session.image_source(product_id, n)
        if source is None:
            raise HTTPException(404, f"product {product_id!r} has no image" + (f" number {n}" if n else ""))
        if is_url(source):  # a redirect only where indexing could fetch: never to the server's own network
            try:
                await run_in_threadpool(check_url, source, index.session.image_url_policy())
            except ImageLoadError:
                raise HTTPException(404, f"the image of product {product_id!r} is not served: its URL is not on a "
                                         "public address") from None
            return RedirectResponse(source)
        encoders = index.config.encoders
        try:
            data, media_type = await run_in_threadpool(served_image, source, index.session.image_roots(),
                                                       encoders.image_max_pixels, encoders.image_max_aspect)
        except ImageRefused as refused:
            raise HTTPException(refused.status, f"the image of product {product_id!r} is not served: {refused.reason}") from None
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    return routes
