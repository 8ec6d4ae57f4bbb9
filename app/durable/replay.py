"""Running a stored request through the app in process, as if it had just arrived: the same
routes, checks and middleware as a client's request, so a job's result is exactly the
synchronous answer. The scope names the job's client (``REPLAY_CLIENT``), whom the access
middleware trusts: a stored request keeps no key."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message

from app.durable.records import StoredRequest, StoredResponse
from app.security.access import REPLAY_CLIENT

# What a stored request keeps of its headers: what the route reads. Never a key or a cookie;
# never Accept (a job's result is the plain answer, not a stream) or Prefer (it would defer again).
KEPT_HEADERS = ("content-type", "serve_multiplexed_model_id")
# Added when a job is accepted: the weights (X-Model tag) it must run on, read only in replays.
WEIGHTS_HEADER = "x-pixelcnn-weights"


def kept_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in headers
        if k.decode("latin-1").lower() in KEPT_HEADERS
    ]


async def call_app(app: ASGIApp, request: StoredRequest, client: object) -> StoredResponse:
    """Send ``request`` to ``app`` and collect its whole answer."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": {},
        REPLAY_CLIENT: client,
    }
    sent = False
    finished = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await finished.wait()  # nobody disconnects from an in-process call
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[str, str]] = []
    body = bytearray()

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return StoredResponse(status, headers, bytes(body))
