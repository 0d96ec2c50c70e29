"""How library errors become HTTP answers: bad input 422, an unwritable event log or disk 503."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from vitrina.encoders.errors import EncoderError, ImageLoadError
from vitrina.engine.data.catalog import CatalogError
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.event_store import EventLogError
from vitrina.index.errors import IndexStoreError

log = logging.getLogger("vitrina.serving")


async def bad_input(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def log_unwritable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)  # the server's disk, not the request


async def storage_problem(request: Request, exc: OSError) -> JSONResponse:
    """A full, read-only or failing disk: 503 with the reason, never the server's paths (those go to the log)."""
    log.error("%s %s failed on the index files: %s", request.method, request.url.path, exc)
    why = exc.strerror or type(exc).__name__
    return JSONResponse({"detail": f"the server could not read or write its index files ({why}); "
                                   "nothing was changed, try again later"}, status_code=503,
                        headers={"Retry-After": "60"})


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
    return JSONResponse({"detail": "; ".join(problems), "errors": plain(exc.errors())}, status_code=422)


def plain(errors: list[dict]) -> list[dict]:
    """Validation errors without the raw input objects (bytes, files) that JSON cannot carry."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))} for e in errors]


def add_error_handlers(app: FastAPI) -> None:
    """Register the answers to library errors (the index's own problems are the request's: 422 too)."""
    for error in (QueryError, ImageLoadError, CatalogError, IndexStoreError, EncoderError):
        app.add_exception_handler(error, bad_input)
    app.add_exception_handler(EventLogError, log_unwritable)
    app.add_exception_handler(OSError, storage_problem)
    app.add_exception_handler(RequestValidationError, invalid_request)
