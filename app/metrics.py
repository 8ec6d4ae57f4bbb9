"""Prometheus metrics, one registry per app (so tests can build several apps)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pixelcnn_requests",
            "HTTP requests by route, status and model ('' for routes of no model)",
            ["route", "status", "model"],
            registry=r,
        )
        self.latency = Histogram(
            "pixelcnn_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.queue_depth = Gauge("pixelcnn_queue_images", "images waiting for the worker", registry=r)
        self.batch_size = Histogram(
            "pixelcnn_batch_images",
            "images per merged batch, by model",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.images_generated = Counter(
            "pixelcnn_images_generated", "images sampled by /generate, by model", ["model"], registry=r
        )
        self.client_requests = Counter(
            "pixelcnn_client_requests",
            "HTTP requests by client (an API key's name; 'anonymous' without one) and status",
            ["client", "status"],
            registry=r,
        )
        self.client_images = Counter(
            "pixelcnn_client_images", "images of work queued, by client", ["client"], registry=r
        )
        self.rejections = Counter(
            "pixelcnn_rejections", "requests refused or dropped by reason", ["reason"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str | None:
    """The template of the app's own route (not an included router's) that ``scope`` fits.

    These are the routes FastAPI adds itself (``/openapi.json``, ``/docs``, ``/redoc``) and
    mounted files (``/static/{path}``), which leave no ``route`` in the scope; a path that fits
    a route but not its method counts under that route.
    """
    router = getattr(scope.get("app"), "router", None)
    partial = None
    for route in getattr(router, "routes", ()):
        template = getattr(route, "path_format", None)
        if template is None:  # an included router: its routes name themselves in the scope
            continue
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(template)
        if match == Match.PARTIAL and partial is None:
            partial = str(template)
    return partial


def request_model(scope: Scope) -> str:
    """The name of the model a request was served by ('' when none: not a model route, or
    refused before a model was chosen); routes record it with ``app.serving.resolve``."""
    served = scope.get("state", {}).get("served_model")
    return str(getattr(served, "name", ""))


class MetricsMiddleware:
    """Counts every HTTP request by its route template and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        recorded = False
        own_route = route_template(dict(scope))  # before routing rewrites the scope

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            # Routing leaves the matched APIRoute in the scope; FastAPI's own routes and mounts
            # do not, so they are matched above. Anything else is "unmatched".
            route = getattr(scope.get("route"), "path_format", None) or own_route or "unmatched"
            model = request_model(scope)
            self.metrics.requests.labels(route=route, status=str(status), model=model).inc()
            client = getattr(scope.get("state", {}).get("client"), "name", "anonymous")
            self.metrics.client_requests.labels(client=client, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the client can see the end of the response and ask /metrics
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            record()  # no complete response was sent (an error, a client gone)
