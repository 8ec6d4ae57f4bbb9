"""Client errors: one exception type carrying a status and a message that says what to fix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("app")


class ClientError(Exception):
    """A request we refuse: ``status`` is a 4xx (or 503 for overload), ``detail`` the reason."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def json_problem(body: Any, error: dict[str, Any]) -> str:
    """Where and why a body is not JSON, e.g. "not valid JSON at line 1, column 7 (expecting value)"."""
    offsets = [p for p in error.get("loc", ()) if isinstance(p, int)]
    reason = str((error.get("ctx") or {}).get("error", "")).strip()
    where = ""
    if offsets and isinstance(body, str):
        offset = min(offsets[0], len(body))
        line = body.count("\n", 0, offset) + 1
        column = offset - (body.rfind("\n", 0, offset) + 1) + 1
        where = f" at line {line}, column {column}"
    why = f" ({reason[0].lower()}{reason[1:]})" if reason else ""
    return f"not valid JSON{where}{why}"


def describe_validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """One readable sentence, and the errors without the offending input (which may be NaN,
    bytes or anything else that JSON cannot carry)."""
    errors: list[dict[str, Any]] = []
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            # The location is a character offset into the body, not a field: say it in words.
            message = json_problem(exc.body, error)
            loc = []
        field = ".".join(loc) or "body"
        parts.append(f"{field}: {message}")
        errors.append({"loc": loc, "msg": message, "type": str(error.get("type", ""))})
    return "; ".join(parts) or "invalid request", errors


# nginx's "client closed request": recorded in metrics (a 4xx, so no 5xx alert fires) and
# logged, though the client is gone and never reads it.
CLIENT_CLOSED = 499


def client_closed(request: Request) -> JSONResponse:
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "the client disconnected before the request was complete"}, CLIENT_CLOSED)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Every route that reads a body ends here when its client goes away mid-upload.
        return client_closed(request)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(exc.__cause__, ClientDisconnect):  # FastAPI's own body parsing wraps it
            return client_closed(request)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the body could not be parsed: send JSON (UTF-8) or multipart/form-data as documented"
        elif exc.status_code == 404:
            detail = f"not found: {request.url.path} (see /docs for the routes)"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: logged with its traceback, answered as JSON.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: this is a bug in the server"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = describe_validation_errors(exc)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
