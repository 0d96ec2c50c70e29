"""/admin/reload: load an index version and swap it in while serving."""

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException

from vitrina.encoders.errors import EncoderError
from vitrina.index.errors import IndexStoreError
from vitrina.serving.dependencies import Dependencies, Holder
from vitrina.serving.schemas import ReloadIn, ReloadOut

log = logging.getLogger("vitrina.serving")


def router(deps: Dependencies) -> APIRouter:
    routes = APIRouter()
    serving = deps.serving

    @routes.post("/admin/reload", response_model=ReloadOut, dependencies=deps.write,
                 summary="Load an index version and swap it in atomically while serving")
    async def reload(holder: Holder, body: Annotated[ReloadIn | None, Body()] = None) -> dict[str, Any]:
        # One answer whether the path is missing, outside the allowed folders, not an index or damaged (the
        # server log says which): the API must not tell which server paths exist.
        path = body.path if body else None
        refused = HTTPException(422, "kept serving the current version; the index did not load (it is missing, not an "
                                     "index, damaged or outside the folders reloads may use; the server log says why)")
        if path is not None and not reloadable(Path(path), holder.path, serving.reload_roots):
            log.warning("refused to reload %s: outside the folders reloads may use", path)
            raise refused
        try:
            swap = await holder.reload(path)
        except (IndexStoreError, EncoderError, OSError, ValueError) as exc:
            log.warning("could not reload %s: %s", path or holder.path, exc)
            raise refused from None
        return swap.__dict__

    return routes


def reloadable(path: Path, served: Path, roots: tuple[str, ...]) -> bool:
    """Whether `path` lies inside a folder reloads may use: `roots`, or else the served path's parent."""
    allowed = [Path(r) for r in roots] or [Path(served).absolute().parent]
    target = path.absolute().resolve()
    return any(target.is_relative_to(root.absolute().resolve()) for root in allowed)
