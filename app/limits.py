"""Request body size limit, enforced before and while the body is read."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TAIL_BYTES = 256  # enough for a multipart closing boundary (at most 70 characters)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that body parsing passes it through."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"request body too large: at most {max_bytes:,} bytes are accepted")


class BodySizeLimit:
    """Answers 413 for bodies over ``max_bytes``: at once from Content-Length when it is
    declared, otherwise as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body too large: at most {self.max_bytes:,} bytes are accepted"},
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal()(scope, receive, send)
            return
        received = 0
        started = False
        tail = b""

        async def counting_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                # The body's last bytes, so that an error can tell a multipart body cut short.
                tail = (tail + chunk)[-TAIL_BYTES:]
                if not message.get("more_body", False):
                    scope.setdefault("state", {})["body_tail"] = tail
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refusal()(scope, receive, send)
