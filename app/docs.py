"""The API docs pages, /docs (Swagger UI) and /redoc, kept to the service itself.

Their scripts and styles are the files of the ``fastapi-offline`` package, served by the app
(see ``create_app``), and ``DocsPolicy`` sends the two pages with a Content-Security-Policy
that lets them load scripts, styles, images, fonts and data only from the service: so the
docs work without internet and never reach another host with it (ReDoc, for one, would
fetch its logo from a CDN).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = ("/docs", "/redoc")
# The pages' own inline bootstrap script and the UIs' inline styles are allowed; ReDoc runs
# its search in a worker made from a blob.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'"
)


class DocsPolicy:
    """Adds ``POLICY`` to the responses of the docs pages."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = DOCS_PATHS):
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Content-Security-Policy", POLICY)
            await send(message)

        await self.app(scope, receive, send_with_policy)
