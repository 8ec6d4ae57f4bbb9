"""A job's ``callback_url``: when the job ends, its status JSON (never its images) is POSTed
there, signed with HMAC-SHA256 (``X-PixelCNN-Signature: sha256=HEX`` over the body, key
``PIXELCNN_CALLBACK_SECRET``) and retried with backoff. Only hosts listed in
``PIXELCNN_CALLBACK_HOSTS`` may be named (none by default), and redirects are not followed, so
the service cannot be turned against a network it can reach."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.durable.context import deferring, replaying
from app.errors import ClientError, shown
from app.settings import Settings

log = logging.getLogger("app")
SIGNATURE_HEADER = "X-PixelCNN-Signature"
DELAYS_S = (0.5, 2.0, 8.0, 30.0)  # between attempts: five in all


def allowed_hosts(settings: Settings) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in (settings.callback_hosts or "").split(",") if h.strip())


def record_callback(url: str | None, settings: Settings) -> None:
    """Check a request's ``callback_url`` and keep it for its job (422 when it is not allowed)."""
    if not url or replaying.get() is not None:  # a stored job's was checked when it was accepted
        return
    deferral = deferring.get()
    if deferral is None:
        raise ClientError(
            422, "callback_url is for asynchronous requests: send it with Prefer: respond-async"
        )
    try:
        httpx.URL(url)  # what will send it must be able to read it
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except (httpx.InvalidURL, ValueError):
        raise ClientError(422, f"callback_url is not a valid URL: {shown(url)}") from None
    hosts = allowed_hosts(settings)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(422, f"callback_url must be an http(s) URL, got {shown(url)}")
    host = parts.hostname.lower()
    if not hosts:
        raise ClientError(422, "callbacks are off on this server (PIXELCNN_CALLBACK_HOSTS lists no host)")
    if host not in hosts and parts.netloc.lower() not in hosts:
        raise ClientError(
            422, f"callback_url's host {shown(host)} is not allowed; allowed: {', '.join(sorted(hosts))}"
        )
    deferral.callback_url = url


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def notify(url: str, status: dict[str, Any], secret: str | None) -> bool:
    """POST ``status`` to ``url`` until it answers 2xx (True) or the attempts run out (False)."""
    body = json.dumps(status, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        for delay in (*DELAYS_S, None):
            try:
                answer = await client.post(url, content=body, headers=headers)
                if 200 <= answer.status_code < 300:
                    return True
                why = f"HTTP {answer.status_code}"
            except Exception as exc:  # refused, timed out, or unsendable: try again, then give up
                why = type(exc).__name__
            if delay is None:
                log.warning("job %s: callback failed (%s); giving up", status.get("id"), why)
                return False
            await asyncio.sleep(delay)
    return False
