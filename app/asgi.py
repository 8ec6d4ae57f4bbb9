"""A small base for ASGI middleware that adds headers to every HTTP response (streamed ones
too, which a route's own headers would miss): a subclass says which, from the request's scope."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AddHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def headers(self, scope: Scope) -> dict[str, str]:
        """The headers to set on this request's response (read when the response starts)."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers(scope).items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
