"""The app factory. ``uvicorn app.main:app`` serves the models ``PIXELCNN_WEIGHTS`` names (the
shipped weights by default); tests build their own app around tiny models with
``create_app(models={"name": model, ...})``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import SQLAlchemyError

from app.docs import DocsPolicy
from app.durable import routes as job_routes
from app.durable.context import Deferred
from app.durable.database import without_password
from app.durable.runner import JobRunner
from app.durable.store import JobStore
from app.durable.submit import AsyncJobs, accept_job, store_unavailable
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.metrics import Metrics, MetricsMiddleware
from app.models.registry import ModelRegistry
from app.models.repository import RepositoryError
from app.routes import admin, codec, complete, generate, likelihood, meta, upscale
from app.schemas import ReloadReport
from app.security.access import Access
from app.security.headers import SecurityHeaders
from app.security.keys import read_keys
from app.serving import MODEL_HEADER, ModelHeader, Service
from app.settings import Settings, get_settings
from app.timeouts import BodyTimeout
from app.worker import InferenceWorker
from model.checkpoint import CheckpointError
from model.inference.cached import warm_up
from model.network.pixelcnn import PixelCNN

log = logging.getLogger("app")
# What a page on another origin listed in PIXELCNN_CORS_ORIGINS may read of an answer.
EXPOSED_HEADERS = [
    "X-Model",
    "X-Seeds",
    "X-Labels",
    "X-Bits-Per-Dim",
    "X-Factor",
    "X-Bytes",
    "X-Images",
    "Retry-After",
    "Location",
    "Preference-Applied",
]
STATIC = Path(__file__).resolve().parent / "static"


def reload_on_sighup(registry: ModelRegistry) -> None:
    """``kill -HUP`` reloads the models (where this thread may take signals: ``python -m app``)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()

    def reload() -> None:
        log.info("SIGHUP: reloading the models")
        future = loop.run_in_executor(None, registry.reload)
        future.add_done_callback(report)

    def report(future: asyncio.Future[ReloadReport]) -> None:
        if future.exception() is not None:
            log.error("reload failed: %s", future.exception())

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reload)


def create_app(
    settings: Settings | None = None,
    models: Mapping[str, PixelCNN] | None = None,
    on_use: Callable[[str], Awaitable[object]] | None = None,
) -> FastAPI:
    """Build the service; ``models`` (name -> model) replaces the weights files, for tests;
    ``on_use`` hears the name of every model a request uses (Ray Serve's multiplexing).
    The default model is loaded in the lifespan, never at import time; others on first use."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = app.dependency_overrides.get(get_settings, get_settings)()
        if current.torch_threads:
            torch.set_num_threads(current.torch_threads)
        worker = InferenceWorker(current, metrics)
        try:
            registry = ModelRegistry(current, worker, models)
            default = registry.load_default()
        except (CheckpointError, RepositoryError) as exc:
            log.error("cannot start: %s", exc)
            raise
        warm_up()  # the sampler's compiled row loops, before the first request needs them
        try:
            store = JobStore(current.job_store, current.max_stored_jobs, current.max_stored_bytes)
        except Exception as exc:
            log.error(
                "cannot start: the job store %s cannot be opened: %s",
                without_password(current.job_store),
                exc,
            )
            raise
        worker.after_batch = registry.trim
        worker.start()
        jobs = JobRunner(app, store, current, worker)
        app.state.service = Service(registry, worker, metrics, on_use, jobs)
        await jobs.start()
        reload_on_sighup(registry)
        log.info(
            "serving %d model(s): %s; default %s (%s parameters)",
            len(registry.entries),
            ", ".join(sorted(registry.entries)),
            default.tag,
            f"{default.model.parameter_count():,}",
        )
        try:
            yield
        finally:
            await jobs.stop()
            worker.stop()
            store.close()
            app.state.service = None

    # /docs and /redoc with Swagger UI's and ReDoc's files served from the fastapi-offline
    # package (under /static-offline-docs), not a CDN: the docs work without internet
    # (app.docs keeps them from reaching any other host).
    app = FastAPIOffline(
        title="PixelCNN service",
        version="0.1.0",
        description="Generate new images, complete partly masked ones, score them pixel by pixel, "
        "compress them losslessly and enlarge small ones (super-resolution) with PixelCNN models: by "
        "default one trained on Fashion-MNIST, or any trained with `python -m model.train` on "
        "your own images. One service may host several (GET /models lists them; every route takes "
        "a 'model' field). Errors are JSON objects with a 'detail' message.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
        # No /path/ -> /path redirects: Starlette builds them from the Host header.
        redirect_slashes=False,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    configured = settings or get_settings()
    keys = read_keys(configured.api_keys_file) if configured.api_keys_file else None
    install_error_handlers(app)
    app.add_exception_handler(Deferred, accept_job)
    app.add_exception_handler(SQLAlchemyError, store_unavailable)
    for module in (generate, complete, upscale, likelihood, codec, meta, admin, job_routes):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """The page's icon, at the path browsers ask for unprompted (a PNG: they all read it)."""
        return FileResponse(STATIC / "favicon.png", media_type="image/png")

    # The last added runs first: metrics see every answer, refusals included; CORS answers
    # its preflights before keys are asked for.
    app.add_middleware(AsyncJobs)
    app.add_middleware(BodySizeLimit, max_bytes=configured.max_upload_bytes)
    app.add_middleware(BodyTimeout, seconds=configured.body_timeout_s)
    app.add_middleware(DocsPolicy)
    app.add_middleware(ModelHeader)
    app.add_middleware(Access, keys=keys, origins=configured.allowed_origins)
    if configured.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(configured.allowed_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept", "Prefer", MODEL_HEADER],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


app = create_app()
