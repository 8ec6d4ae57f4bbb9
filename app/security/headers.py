"""The headers every response carries: no MIME sniffing, no referrer, never framed, and a
Content-Security-Policy that keeps every script, style and connection on the service (the API
docs get their own, ``app.docs.POLICY``, which allows their inline bootstrap)."""

from __future__ import annotations

from starlette.types import Scope

from app.asgi import AddHeaders
from app.docs import DOCS_PATHS

# The page draws results from data: URLs and offers downloads from blob: URLs.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}


class SecurityHeaders(AddHeaders):
    def headers(self, scope: Scope) -> dict[str, str]:
        if scope["path"] in DOCS_PATHS:  # the docs send their own policy (app.docs)
            return ALWAYS
        return {**ALWAYS, "Content-Security-Policy": POLICY}
