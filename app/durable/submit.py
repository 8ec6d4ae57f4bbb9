"""``Prefer: respond-async`` (RFC 7240): a model route's request becomes a stored job.

``AsyncJobs`` (ASGI middleware) keeps the body of such a request, so that it can be stored,
and marks the request as deferred (``app.durable.context``). The route then runs as usual: a
bad request is still a plain 4xx, a full queue still a 503, past a client's limits a 429. Where
it would queue its work, ``Deferred`` is raised, and ``accept_job`` stores the request with its
seed and answers ``202 Accepted`` with ``Location: /jobs/{id}``.
"""

from __future__ import annotations

import logging
import time

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.durable.context import Deferral, Deferred, deferring
from app.durable.records import JobRecord, StoredRequest, new_job_id
from app.durable.replay import WEIGHTS_HEADER, kept_headers
from app.durable.store import StoreFull
from app.durable.views import job_view, parameters
from app.security.access import current_client
from app.serving import MODEL_HEADER

log = logging.getLogger("app")
ASYNC_ROUTES = frozenset({"/generate", "/complete", "/upscale", "/likelihood", "/compress", "/decompress"})


def prefers_async(headers: Headers) -> bool:
    """``Prefer`` holds the ``respond-async`` preference (in any of its headers, any case)."""
    for value in headers.getlist("prefer"):
        for preference in value.split(","):
            if preference.split(";")[0].split("=")[0].strip().lower() == "respond-async":
                return True
    return False


class AsyncJobs:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if (
            headers is None
            or scope["method"] != "POST"
            or scope["path"] not in ASYNC_ROUTES
            or not prefers_async(headers)
        ):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:  # the body-size limit outside this middleware still applies
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        stored = StoredRequest(
            "POST",
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            kept_headers(scope["headers"]),
            bytes(body),
        )
        replayed = False

        async def replay_body() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        token = deferring.set(Deferral(stored))
        try:
            await self.app(scope, replay_body, send)
        finally:
            deferring.reset(token)


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The job store cannot be reached (a database down or locked): 503, not a 500."""
    log.error("the job store failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    detail = "the job store cannot be reached right now; retry shortly"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


async def accept_job(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for ``Deferred``: store the job, answer 202."""
    deferral = deferring.get()
    assert isinstance(exc, Deferred) and deferral is not None
    service = request.app.state.service
    served = getattr(request.state, "served_model", None)
    if served is not None:  # a rerun uses this model and these weights, or none (409)
        pinned = [(k, v) for k, v in deferral.request.headers if k.lower() != MODEL_HEADER]
        deferral.request.headers = [*pinned, (MODEL_HEADER, served.name), (WEIGHTS_HEADER, served.tag)]
    record = JobRecord(
        id=new_job_id(),
        route=deferral.request.path,
        request=deferral.request,
        seed=deferral.seed,
        client=current_client.get().name,
        callback_url=deferral.callback_url,
        created=time.time(),
    )
    try:
        await run_in_threadpool(service.jobs.store.add, record)
    except StoreFull as full:
        detail = f"cannot accept more jobs now: {full}; retry later"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "30"})
    except SQLAlchemyError as error:
        return await store_unavailable(request, error)
    service.jobs.wake()
    headers = {"Location": f"/jobs/{record.id}", "Preference-Applied": "respond-async"}
    view = job_view(record, position=None, fields=await parameters(record.request))
    return JSONResponse(view.model_dump(), status_code=202, headers=headers)
