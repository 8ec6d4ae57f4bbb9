"""What the lifespan builds and the routes use (the model registry, the inference worker, the
metrics), and how a request chooses its model.

A request names its model in its ``model`` field (JSON or form), or in the
``serve_multiplexed_model_id`` header that Ray Serve routes by (accepted under uvicorn too, so
one client works with both); neither: the default model. Every response of a model route names
the weights that made it in ``X-Model: name@sha256-prefix``, streamed responses too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from app.asgi import AddHeaders
from app.durable.callbacks import record_callback
from app.durable.context import replaying
from app.durable.replay import WEIGHTS_HEADER
from app.errors import ClientError, shown
from app.metrics import Metrics
from app.models.registry import ModelRegistry
from app.models.served import ServedModel
from app.schemas import CALLBACK_FIELD, MODEL_FIELD
from app.settings import Settings, get_settings
from app.worker import InferenceWorker

if TYPE_CHECKING:
    from app.durable.runner import JobRunner

MODEL_HEADER = "serve_multiplexed_model_id"  # Ray Serve's model multiplexing header
TAG_HEADER = "X-Model"


@dataclass
class Service:
    registry: ModelRegistry
    worker: InferenceWorker
    metrics: Metrics
    # Ray Serve's multiplexing: told of each model a request uses, so that Serve routes that
    # model's requests to the replicas holding it (app.ray_deployment); None under uvicorn.
    on_use: Callable[[str], Awaitable[object]] | None = None
    jobs: JobRunner | None = None  # durable jobs (Prefer: respond-async): app.durable


def get_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ClientError(503, "the service is still starting", headers={"Retry-After": "5"})
    return service


async def resolve(request: Request, name: str | None) -> ServedModel:
    """The loaded model a request asked for (404 unknown, 503 unloadable), loading it if need be."""
    service = get_service(request)
    header = request.headers.get(MODEL_HEADER) or None
    name = name or None
    if name and header and name != header:
        raise ClientError(
            400, f"the 'model' field ({shown(name)}) and the {MODEL_HEADER} header ({shown(header)}) disagree"
        )
    chosen = name or header or service.registry.default
    service.registry.entry(chosen)  # 404 for an unknown name, before Serve hears of it
    if service.on_use is not None:
        await service.on_use(chosen)
    served = await run_in_threadpool(service.registry.get, chosen, True)  # held until the response ends
    request.state.served_model = served  # read by ModelHeader (which lets go of it) and the metrics
    pinned = request.headers.get(WEIGHTS_HEADER) if replaying.get() is not None else None
    if pinned and pinned != served.tag:
        raise ClientError(
            409,
            f"the job was accepted for weights {pinned}; {served.name} now serves {served.tag}: "
            "submit it again",
        )
    return served


async def form_model(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    model: Annotated[str | None, Form(max_length=200, description=MODEL_FIELD)] = None,
    callback_url: Annotated[str | None, Form(max_length=2000, description=CALLBACK_FIELD)] = None,
) -> ServedModel:
    record_callback(callback_url, settings)
    return await resolve(request, model)


class ModelHeader(AddHeaders):
    """A response of a model route says which weights made it (``X-Model``); and the model
    counts as busy until the response has ended (``resolve`` takes it), so that it is never
    unloaded between a request getting it and the request's job being queued."""

    def headers(self, scope: Scope) -> dict[str, str]:
        served = scope.get("state", {}).get("served_model")
        return {TAG_HEADER: served.tag} if served is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            served = scope.get("state", {}).get("served_model") if scope["type"] == "http" else None
            if served is not None:
                served.hold(-1)
                service = getattr(scope["app"].state, "service", None)
                if service is not None:
                    service.registry.trim()  # it may be the one over the limit now


ServingDep = Annotated[ServedModel, Depends(form_model)]  # the model a multipart request names
ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
