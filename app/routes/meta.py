"""Health, readiness, the models' descriptions, metrics, and the web page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.schemas import ModelInfo, ModelStatus, error_responses
from app.serving import ServiceDep

router = APIRouter(tags=["service"])
STATIC = Path(__file__).resolve().parents[1] / "static"


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (it may still be loading the model)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "the model is not loaded yet"}})
async def ready(request: Request) -> JSONResponse:
    """The default model is loaded and the worker is running."""
    service = getattr(request.app.state, "service", None)
    if service is None or not service.worker.alive:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready"})


def _info(status: ModelStatus) -> ModelInfo:
    if status.info is None:
        raise ClientError(503, f"model {status.name!r} cannot be served: {status.error}")
    return status.info


@router.get("/model", responses=error_responses(503))
async def model_info(service: ServiceDep) -> ModelInfo:
    """The default model: config, parameter count, test bits/dim and the weights' sha256."""
    return _info(service.registry.status(service.registry.entry(None)))


@router.get("/models")
async def models(service: ServiceDep) -> list[ModelStatus]:
    """Every model this service hosts, whether loaded now or not, and why one cannot serve."""
    return await run_in_threadpool(service.registry.listing)


@router.get("/models/{name}", responses=error_responses(404, 503))
async def model_by_name(name: str, service: ServiceDep) -> ModelInfo:
    """One model, as ``/model`` describes the default (404: no such model, listing those there are)."""
    return _info(service.registry.status(service.registry.entry(name)))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")
