"""Slow clients: time limits on receiving a request's headers and its body.

uvicorn waits for a request forever; these bound it. The body limit is an ASGI middleware (in
every app); the header limit needs the HTTP protocol itself, so it is a subclass of uvicorn's
h11 protocol that ``python -m app`` serves with. Either answers 408 where a response is still
possible and closes the connection. A reverse proxy in front is still the advice in production.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


def _body_message(seconds: float) -> str:
    return f"request body not received within {seconds:g} s: send the whole body without pausing"


class BodyTimedOut(HTTPException):
    """Raised from ``receive``; an HTTPException so that body parsing passes it through."""

    def __init__(self, seconds: float):
        super().__init__(408, _body_message(seconds), headers={"Connection": "close"})


class BodyTimeout:
    """Answers 408 when the next piece of a request body takes more than ``seconds`` to arrive.

    Only the body is timed: once it is complete, ``receive`` waits for a disconnect as long as
    the route likes (a streamed response listens for one).
    """

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                raise BodyTimedOut(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except BodyTimedOut as exc:
            if not started:
                response = JSONResponse({"detail": exc.detail}, status_code=408, headers=exc.headers)
                await response(scope, receive, send)


def _raw_408(detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long.

    The clock starts when the connection opens and again when a kept-alive connection starts
    sending its next request; it stops once the headers are complete. A client that sent part
    of its headers gets a 408; one that sent nothing is closed quietly.
    """

    header_timeout_s = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            if self._header_timer is None and not self.transport.is_closing():
                self._start_header_clock()  # part of the next request's headers
        else:
            self._stop_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a request arrived: it can still get an answer
            seconds = f"{self.header_timeout_s:g}"
            self.transport.write(_raw_408(f"request headers not received within {seconds} s"))
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn as ``http=``, with its limit set."""
    attributes: dict[str, Any] = {"header_timeout_s": seconds}
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), attributes)
