"""/users/{id}/recommendations: products for one shopper, from the live behaviour model."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from vitrina.engine.config import RecommendConfig
from vitrina.engine.query.recommend import recommend
from vitrina.serving.dependencies import Dependencies, Live, UserId
from vitrina.serving.responses import results
from vitrina.serving.schemas import Results


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    K = deps.K

    @routes.get("/users/{user_id}/recommendations", response_model=Results, response_model_exclude_unset=True,
                dependencies=deps.personal_read, summary="Products for one shopper (best sellers for an unknown one)")
    async def recommendations(index: Live, user_id: UserId, k: K = 10,
                              include_seen: Annotated[bool | None, Query(description=(
                                  "also the shopper's own products, with a re-buy score; unset: on when the shop's "
                                  "customers re-buy (2% of its events come back to a product a day later or more)"))] = None,
                              ) -> dict[str, Any]:
        if index.behaviour is None:
            raise HTTPException(404, f"no recommendations yet: {index.behaviour_why} (or POST /events)")
        hits, personalised = await run_in_threadpool(
            recommend, index.session, user_id, k, include_seen, RecommendConfig(), index.behaviour, index.popular)
        return results(index, hits, personalised)

    return routes
