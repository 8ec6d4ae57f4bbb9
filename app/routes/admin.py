"""``POST /admin/reload``: pick up changed, added and removed weights files without a restart.

With API keys configured it needs an admin key (``app.security.access``); without, only a
client on this machine (loopback) may call it. Jobs already queued or running finish on
the weights they started with; new requests get the new weights. A file that fails to load is
refused and the weights before it keep serving. ``kill -HUP`` does the same for ``python -m app``.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.models.repository import RepositoryError
from app.schemas import ReloadReport, error_responses
from app.serving import ServiceDep, SettingsDep

router = APIRouter(tags=["admin"])


def require_loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        raise ClientError(
            403,
            "admin routes answer only clients on the server's own machine (loopback), "
            "or an admin key where API keys are configured",
        )


@router.post("/admin/reload", responses=error_responses(403, 409, 503))
async def reload_models(request: Request, service: ServiceDep, settings: SettingsDep) -> ReloadReport:
    """Rescan the weights files: which models were added, replaced, removed, or refused (and why)."""
    if settings.api_keys_file is None:
        require_loopback(request)
    try:
        return await run_in_threadpool(service.registry.reload)
    except RepositoryError as exc:
        raise ClientError(409, f"nothing reloaded: {exc}") from None
