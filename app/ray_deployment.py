"""The service as a Ray Serve deployment: ``serve run deploy/serve.yaml`` (needs the ``scale`` extra).

Each replica is one copy of the app that ``create_app`` builds: its lifespan loads the weights
once and starts the replica's own inference worker, so routes, limits, errors, metrics and
dynamic batching are the same code as under uvicorn. Ray does the rest: its proxy routes
requests to replicas, it health-checks them (``check_health`` below), replaces those that die,
and scales their number with the requests in flight.

This module adds two things. The ``X-Replica`` header names the replica behind each response.
And Serve's model multiplexing: a client that sends ``serve_multiplexed_model_id: NAME`` is
routed to a replica that already holds that model, so each replica keeps its own few models
warm instead of every replica loading every model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI
from ray import serve
from starlette.types import ASGIApp, Scope

from app.asgi import AddHeaders
from app.main import create_app
from app.settings import get_settings

REPLICA_HEADER = "X-Replica"


class ReplicaHeader(AddHeaders):
    """Every HTTP response, streamed ones too, says which replica served it."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        super().__init__(app)
        self.replica = replica

    def headers(self, scope: Scope) -> dict[str, str]:
        return {REPLICA_HEADER: self.replica}


@dataclass(frozen=True)
class HeldModel:
    """What Serve's per-replica LRU holds for a model: only its name. The app's registry keeps
    the weights, with the same limit, and never unloads a model with queued work; Serve's LRU
    drops its entries without asking (even mid-request), so it must not own the weights. It
    only tells Serve's router which models this replica holds. (No ``__del__``: Serve calls
    one on eviction, and there is nothing to free.)"""

    name: str


class PixelCNNReplica:
    """One replica: the FastAPI app, built when the replica starts, from ``PIXELCNN_*`` settings."""

    def __init__(self) -> None:
        self.replica = serve.get_replica_context().replica_tag
        self.fastapi: FastAPI | None = None

        async def load(name: str) -> HeldModel:
            """Load ``name`` into the registry, off the event loop (it reads and checks a file)."""
            assert self.fastapi is not None  # requests, our only callers, come after the lifespan
            await asyncio.to_thread(self.fastapi.state.service.registry.get, name)
            return HeldModel(name)

        # Serve's limit exists only as this decorator's argument; built here, not at import, so
        # that it follows PIXELCNN_MAX_LOADED_MODELS as the registry does. (A closure, not a bound
        # method: Serve stores its cache on the function object.)
        limit = get_settings().max_loaded_models
        self.use_model = serve.multiplexed(max_num_models_per_replica=limit)(load)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve once per replica, after ``__init__``; Serve then runs the app's lifespan."""
        self.fastapi = create_app(on_use=self.use_model)
        self.fastapi.add_middleware(ReplicaHeader, replica=self.replica)
        return self.fastapi

    def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s``; raising gets the replica replaced."""
        service = getattr(self.fastapi.state, "service", None) if self.fastapi else None
        if service is None or not service.worker.alive:
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
