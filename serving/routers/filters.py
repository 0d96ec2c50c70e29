"""/filters: what the category and brand filters can take, the price range, and the columns they read."""

from typing import Any

from fastapi import APIRouter

from vitrina.serving.dependencies import Dependencies, Live


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()

    @routes.get("/filters", dependencies=deps.read, summary="What the category and brand filters can take, and the price range")
    async def filters(index: Live) -> dict[str, Any]:
        columns = index.session.filters
        prices = columns.price_range()
        return {
            "category": columns.values("category"), "brand": columns.values("brand"),
            "price": {"min": prices[0], "max": prices[1]} if prices else None,
            "columns": columns.columns, "index_version": index.version,
        }

    return routes
