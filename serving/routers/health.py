"""/healthz (the process is up), /readyz (an index is loaded) and /metrics (Prometheus)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from vitrina.serving.dependencies import Holder, Metrics

router = APIRouter()


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="An index is loaded and warmed up", responses={503: {"description": "not ready"}})
async def readyz(holder: Holder) -> JSONResponse:
    current = holder.current
    if current is None:
        return JSONResponse({"status": "loading" if holder.load_error is None else "failed",
                             "detail": holder.load_error}, status_code=503)
    return JSONResponse({"status": "ready", "index_version": current.version, "products": len(current.session.products)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus(metrics: Metrics) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
