"""Health, readiness, the model's description, metrics, and the web page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from app.schemas import ModelInfo, error_responses
from app.serving import ServingDep

router = APIRouter(tags=["service"])
STATIC = Path(__file__).resolve().parents[1] / "static"


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (it may still be loading the model)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "the model is not loaded yet"}})
async def ready(request: Request) -> JSONResponse:
    """The model is loaded and the worker is running."""
    serving = getattr(request.app.state, "serving", None)
    if serving is None or not serving.worker.alive:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/model", responses=error_responses(503))
async def model_info(serving: ServingDep) -> ModelInfo:
    """Config, parameter count, test bits/dim and the weights' sha256."""
    return serving.info


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(serving: ServingDep) -> Response:
    return Response(serving.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")
