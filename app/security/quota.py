"""Per-client limits on work, so that one client cannot take the service from the others:
a rate in images of work per minute (``PIXELCNN_RATE_IMAGES_PER_MIN``), counted by the
``limits`` library in a moving one-minute window, kept in memory or, for several processes or
replicas, in a shared store (``PIXELCNN_RATE_LIMIT_STORAGE=redis://host:6379``). The cap on a
client's queued images (``PIXELCNN_MAX_QUEUED_PER_CLIENT``) is the worker's, which owns the
queue. Past either: 429 with ``Retry-After``."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.errors import ClientError
from app.metrics import Metrics
from app.security.access import Client


class RateLimit:
    def __init__(self, images_per_minute: int | None, storage: str, metrics: Metrics) -> None:
        self.item = RateLimitItemPerMinute(images_per_minute) if images_per_minute else None
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage)) if self.item else None
        self.metrics = metrics

    def charge(self, client: Client, images: int) -> None:
        """Count ``images`` of work against ``client``'s minute, or refuse them (422 when a
        request alone is more than a minute allows, else 429 until enough of it has passed)."""
        if self.item is not None and self.limiter is not None:
            allowed = self.item.amount
            if images > allowed:
                raise ClientError(
                    422,
                    f"this request needs {images} images of work, more than a client may use in a "
                    f"minute ({allowed}); ask for fewer",
                )
            try:
                admitted = self.limiter.hit(self.item, client.limit_key, cost=images)
            except Exception as exc:  # the shared store (Redis) is unreachable: not the client's fault
                raise ClientError(
                    503,
                    f"the rate limit's store cannot be reached ({type(exc).__name__}); retry shortly",
                    headers={"Retry-After": "5"},
                ) from None
            if not admitted:
                stats = self.limiter.get_window_stats(self.item, client.limit_key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                self.metrics.rejections.labels(reason="rate_limit").inc()
                raise ClientError(
                    429,
                    f"rate limit: at most {allowed} images of work per minute per client; "
                    f"{stats.remaining} left now, retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
        self.metrics.client_images.labels(client=client.name).inc(images)


class QueuedPerClient:
    """Images each client has waiting in the queue, capped at ``cap`` (None: no cap). The
    worker calls it under its queue's lock."""

    def __init__(self, cap: int | None, metrics: Metrics) -> None:
        self.cap = cap
        self.metrics = metrics
        self.queued: dict[str, int] = {}

    def join(self, client: Client, images: int) -> None:
        held = self.queued.get(client.limit_key, 0)
        if self.cap is not None and images > self.cap:
            raise ClientError(
                422, f"this request needs {images} images of work, more than a client may queue ({self.cap})"
            )
        if self.cap is not None and held + images > self.cap:
            self.metrics.rejections.labels(reason="client_queue").inc()
            raise ClientError(
                429,
                f"too much queued: you have {held} images of work waiting and this request adds "
                f"{images}; at most {self.cap} per client wait at once",
                headers={"Retry-After": "2"},
            )
        self.queued[client.limit_key] = held + images

    def leave(self, client: Client, images: int) -> None:
        left = self.queued.get(client.limit_key, 0) - images
        if left > 0:
            self.queued[client.limit_key] = left
        else:
            self.queued.pop(client.limit_key, None)
