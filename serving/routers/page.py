"""The search page: / and its static files (not part of the API schema), and GET /page/config, the
settings the page reads (display fields, currency, facets, photos: serving/display.py)."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vitrina.serving.dependencies import Dependencies, Live
from vitrina.serving.display import page_config

STATIC = Path(__file__).resolve().parent.parent / "static"


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    cached: dict[str, dict[str, Any]] = {}  # index version -> its page settings (computed once per version)

    @routes.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @routes.get("/page/config", dependencies=deps.read, summary="What the search page shows: card fields, currency, facets")
    async def config(index: Live) -> dict[str, Any]:
        if index.version not in cached:
            cached.clear()
            cached[index.version] = page_config(index.session, deps.serving)
        return {**cached[index.version], "index_version": index.version}

    return routes
