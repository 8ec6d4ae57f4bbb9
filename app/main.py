"""The app factory. ``uvicorn app.main:app`` serves the shipped weights; tests build their own
app around a tiny model with ``create_app(model_loader=...)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from app.docs import DocsPolicy
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.metrics import Metrics, MetricsMiddleware
from app.routes import codec, complete, generate, likelihood, meta, upscale
from app.serving import Serving, describe
from app.settings import Settings, get_settings
from app.timeouts import BodyTimeout
from app.worker import InferenceWorker
from model.checkpoint import CheckpointError, load
from model.classifier import classifier_for
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN

log = logging.getLogger("app")
STATIC = Path(__file__).resolve().parent / "static"
ModelLoader = Callable[[Settings], PixelCNN]


def load_weights(settings: Settings) -> PixelCNN:
    return load(settings.weights)


def label_classifier(model: PixelCNN, settings: Settings) -> Classifier | None:
    """The classifier that guesses labels for /compress and /upscale, when one is set and fits."""
    if settings.classifier is None:
        return None
    try:
        classifier, why_not = classifier_for(model, settings.classifier)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (set PIXELCNN_CLASSIFIER= empty to serve without one)") from exc
    if why_not and model.config.num_classes:
        log.warning("no label classifier (/compress searches, /upscale infers), since %s", why_not)
    return classifier


def create_app(settings: Settings | None = None, model_loader: ModelLoader | None = None) -> FastAPI:
    """Build the service. The model is loaded in the lifespan, never at import time."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = app.dependency_overrides.get(get_settings, get_settings)()
        if current.torch_threads:
            torch.set_num_threads(current.torch_threads)
        try:
            model = (model_loader or load_weights)(current)
            classifier = label_classifier(model, current)
        except CheckpointError as exc:
            log.error("cannot start: %s", exc)
            raise
        weights = None if model_loader else current.weights
        worker = InferenceWorker(model, current, metrics)
        worker.start()
        app.state.serving = Serving(model, describe(model, weights), worker, metrics, classifier)
        log.info(
            "serving %s (%s parameters)", weights or "an in-memory model", f"{model.parameter_count():,}"
        )
        try:
            yield
        finally:
            worker.stop()
            app.state.serving = None

    # /docs and /redoc with Swagger UI's and ReDoc's files served from the fastapi-offline
    # package (under /static-offline-docs), not a CDN: the docs work without internet
    # (app.docs keeps them from reaching any other host).
    app = FastAPIOffline(
        title="PixelCNN service",
        version="0.1.0",
        description="Generate new images, complete partly masked ones, score them pixel by pixel, "
        "compress them losslessly and enlarge small ones (super-resolution) with a PixelCNN: by "
        "default one trained on Fashion-MNIST, or any model trained with `python -m model.train` on "
        "your own images (GET /model gives its size and class names). Errors are JSON objects "
        "with a 'detail' message.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
        # No /path/ -> /path redirects: Starlette builds them from the Host header.
        redirect_slashes=False,
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    limit = (settings or get_settings()).max_upload_bytes
    body_timeout = (settings or get_settings()).body_timeout_s
    install_error_handlers(app)
    for module in (generate, complete, upscale, likelihood, codec, meta):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """The page's icon, at the path browsers ask for unprompted (a PNG: they all read it)."""
        return FileResponse(STATIC / "favicon.png", media_type="image/png")

    app.add_middleware(BodySizeLimit, max_bytes=limit)
    app.add_middleware(BodyTimeout, seconds=body_timeout)
    app.add_middleware(DocsPolicy)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


app = create_app()
