"""The service as a Ray Serve deployment: ``serve run deploy/serve.yaml`` (needs the ``scale`` extra).

Each replica is one copy of the app that ``create_app`` builds: its lifespan loads the weights
once and starts the replica's own inference worker, so routes, limits, errors, metrics and
dynamic batching are the same code as under uvicorn. Ray does the rest: its proxy routes
requests to replicas, it health-checks them (``check_health`` below), replaces those that die,
and scales their number with the requests in flight. This module only adds the ``X-Replica``
header that names the replica behind each response.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.main import create_app

REPLICA_HEADER = "X-Replica"


class ReplicaHeader:
    """ASGI middleware: every HTTP response, streamed ones too, says which replica served it."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.lower().encode(), replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class PixelCNNReplica:
    """One replica: the FastAPI app, built when the replica starts, from ``PIXELCNN_*`` settings."""

    def __init__(self) -> None:
        self.replica = serve.get_replica_context().replica_tag
        self.fastapi: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve once per replica, after ``__init__``; Serve then runs the app's lifespan."""
        self.fastapi = create_app()
        self.fastapi.add_middleware(ReplicaHeader, replica=self.replica)
        return self.fastapi

    def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising gets the replica replaced."""
        serving = getattr(self.fastapi.state, "serving", None) if self.fastapi else None
        if serving is None or not serving.worker.alive:
            raise RuntimeError(f"replica {self.replica}: the inference worker is not running")


# Defaults for the Python API; deploy/serve.yaml sets the same options for `serve run`/`deploy`.
# max_ongoing_requests well above Serve's default (5) lets a replica's worker merge concurrent
# requests into one batch, as one uvicorn process does. (The decorators are applied as calls
# so that type checkers see a Deployment.)
deployment = serve.deployment(
    name="PixelCNN",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,
    health_check_period_s=5,
)(serve.ingress()(PixelCNNReplica))

# The application that deploy/serve.yaml's import_path names.
pixelcnn = deployment.bind()
