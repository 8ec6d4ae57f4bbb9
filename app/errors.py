"""Client errors: one exception type carrying a status and a message that says what to fix."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from model.pictures import ImageError, Problem

log = logging.getLogger("app")


class ClientError(Exception):
    """A request we refuse: ``status`` is a 4xx (or 503 for overload), ``detail`` the reason."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


# The status of each kind of image a request cannot use (model.pictures.ImageError).
IMAGE_ERROR_STATUS: dict[Problem, int] = {
    "empty": 400,
    "damaged": 400,
    "too large": 413,
    "unsupported": 415,
    "wrong size": 422,
}
SHOWN_CHARS = 100  # the most of a client's value an error repeats back
LISTED_ERRORS = 10  # the most validation errors one answer lists
JSON_BODY_ERRORS = ("model_attributes_type", "dict_type", "model_type")
BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def shown(value: object) -> str:
    """``repr(value)``, cut to about ``SHOWN_CHARS`` characters: what an error may echo."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 20]}... ({len(text):,} characters)"


def _not_finite(value: object) -> bool:
    try:
        return isinstance(value, (str, float)) and not math.isfinite(float(value))
    except ValueError:
        return False


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
    found = exc.errors()
    for error in found[:LISTED_ERRORS]:
        loc = [str(p)[:SHOWN_CHARS] for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg", "invalid value"))
        if error.get("type") in BOUND_ERRORS and _not_finite(error.get("input")):
            message = f"must be a finite number, got {shown(error.get('input'))}"
        elif error.get("type") == "json_invalid":
            # The location is a character offset into the body, not a field: say it in words.
            message = json_problem(exc.body, error)
            loc = []
        field = ".".join(loc) or "body"
        parts.append(f"{field}: {message}")
        errors.append({"loc": loc, "msg": message, "type": str(error.get("type", ""))})
    if len(found) > LISTED_ERRORS:
        parts.append(f"... and {len(found) - LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request", errors


def upload_cut_short(request: Request) -> bool:
    """A multipart body that ended before its closing boundary (``app.limits`` keeps its tail)."""
    content_type = request.headers.get("content-type", "")
    tail = request.scope.get("state", {}).get("body_tail")
    if not content_type.startswith("multipart/form-data") or tail is None:
        return False
    boundary = content_type.partition("boundary=")[2].split(";")[0].strip().strip('"')
    return bool(boundary) and f"--{boundary}--".encode() not in tail


INCOMPLETE = "the upload was incomplete: the multipart body ended before its closing boundary"


def not_json(request: Request, exc: RequestValidationError) -> str | None:
    """Why a JSON route got no object: a body sent as something other than JSON."""
    content_type = request.headers.get("content-type", "") or "none"
    whole_body = [e for e in exc.errors() if tuple(e.get("loc", ())) == ("body",)]
    if "json" in content_type or not any(e.get("type") in JSON_BODY_ERRORS for e in whole_body):
        return None
    return f"the body must be JSON, sent with Content-Type: application/json (got {shown(content_type)})"


# nginx's "client closed request": recorded in metrics (a 4xx, so no 5xx alert fires) and
# logged, though the client is gone and never reads it.
CLIENT_CLOSED = 499


def client_closed(request: Request) -> JSONResponse:
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "the client disconnected before the request was complete"}, CLIENT_CLOSED)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path fits the request's (several routes may share one)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Every route that reads a body ends here when its client goes away mid-upload.
        return client_closed(request)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        if exc.status == 422 and upload_cut_short(request):  # e.g. "'data' is missing"
            return JSONResponse({"detail": INCOMPLETE}, status_code=400)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        return await client_error(request, ClientError(IMAGE_ERROR_STATUS[exc.problem], str(exc)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(exc.__cause__, ClientDisconnect):  # FastAPI's own body parsing wraps it
            return client_closed(request)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the body could not be parsed: send JSON (UTF-8) or multipart/form-data as documented"
        elif exc.status_code == 404:
            detail = f"not found: {shown(request.url.path)} (see /docs for the routes)"
        elif exc.status_code == 405:  # Allow lists every route's methods on this path, not the first's
            allowed = allowed_methods(request)
            return JSONResponse(
                {"detail": f"method {request.method} not allowed here; allowed: {', '.join(allowed)}"},
                status_code=405,
                headers={"Allow": ", ".join(allowed)},
            )
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: logged with its traceback, answered as JSON.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: this is a bug in the server"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if upload_cut_short(request):  # its missing fields are not the client's real problem
            return JSONResponse({"detail": INCOMPLETE}, status_code=400)
        if (wrong_type := not_json(request, exc)) is not None:
            return JSONResponse({"detail": wrong_type}, status_code=415)
        detail, errors = describe_validation_errors(exc)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
