"""Who a request is and whether it may come in: an ASGI middleware in front of every route.

1. A request whose ``Origin`` is neither the service's own nor one of
   ``PIXELCNN_CORS_ORIGINS`` is refused (403): otherwise any web page a user opens could make
   their browser queue heavy jobs here (a "simple" cross-site POST needs no CORS preflight).
2. With API keys configured, every route but the open ones (health, readiness, the page and its
   files, the API docs) needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``: missing 401
   with ``WWW-Authenticate: Bearer``, unknown 401, a ``use`` key on an ``/admin`` route 403.
3. The request's client (the key's name, or the client address without keys) is set for the
   request's task (``current_client``), for the per-client limits and the metrics.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.security.keys import ApiKey, match

OPEN_PATHS = frozenset(
    {"/health", "/ready", "/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
ADMIN_PREFIX = "/admin/"
ANONYMOUS = "anonymous"  # the metrics' name for every client without a key
REPLAY_CLIENT = "pixelcnn.replay_client"  # a stored job run in process: a scope key no request can set


@dataclass(frozen=True)
class Client:
    """Who sent a request: ``name`` labels its metrics; ``limit_key`` keys its limits."""

    name: str
    limit_key: str
    key: ApiKey | None = None


NOBODY = Client(ANONYMOUS, ANONYMOUS)  # work queued outside a request (tests, benchmarks)
current_client: ContextVar[Client] = ContextVar("current_client", default=NOBODY)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address) is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_literal(host: str) -> bool:
    """``host`` is an address or ``localhost``: not a DNS name some other site controls."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return host == "localhost"


def same_origin(origin: str, headers: Headers, names_trusted: bool) -> bool:
    """``origin`` names this service: its host and port are the request's Host. Without API
    keys, only an address or ``localhost`` counts: a DNS name could be rebound to this machine
    by another site, whose pages would then pass for the service's own."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.netloc != headers.get("host"):
        return False
    return names_trusted or is_literal(parts.hostname or "")


class Access:
    def __init__(self, app: ASGIApp, keys: list[ApiKey] | None, origins: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replayed = scope.get(REPLAY_CLIENT)
        if isinstance(replayed, Client):  # a stored job: its client was checked when it was accepted
            await self.admit(scope, receive, send, replayed)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if (
            origin is not None
            and origin not in self.origins
            and not same_origin(origin, headers, self.keys is not None)
        ):
            refusal = (
                "requests from other web sites are refused (that origin is not in PIXELCNN_CORS_ORIGINS)"
            )
            await self.refuse(scope, receive, send, 403, refusal)
            return
        address = scope["client"][0] if scope.get("client") else "unknown"
        client = Client(ANONYMOUS, f"address:{address}")
        path = scope["path"]
        if self.keys is not None and not is_open(path):
            presented = presented_key(headers)
            key = match(self.keys, presented) if presented else None
            if presented is None:
                await self.refuse(
                    scope,
                    receive,
                    send,
                    401,
                    "an API key is needed: send Authorization: Bearer KEY (or X-API-Key: KEY)",
                )
                return
            if key is None:
                await self.refuse(
                    scope, receive, send, 401, "the API key is not valid", error="invalid_token"
                )
                return
            client = Client(key.name, f"key:{key.name}", key)
            if path.startswith(ADMIN_PREFIX) and not key.admin:
                scope.setdefault("state", {})["client"] = client
                await self.refuse(
                    scope,
                    receive,
                    send,
                    403,
                    f"key {key.name!r} may not use admin routes: an admin key is needed",
                )
                return
        await self.admit(scope, receive, send, client)

    async def admit(self, scope: Scope, receive: Receive, send: Send, client: Client) -> None:
        scope.setdefault("state", {})["client"] = client
        token = current_client.set(client)
        try:
            await self.app(scope, receive, send)
        finally:
            current_client.reset(token)

    async def refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str, error: str | None = None
    ) -> None:
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer" + (f' error="{error}"' if error else "")
        await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
