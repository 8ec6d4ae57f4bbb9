"""``POST /admin/reload``: pick up changed, added and removed weights files without a restart.

With API keys configured it needs an admin key (``app.security.access``); without, only a
client on this machine (loopback) may call it. Jobs already queued or running finish on
the weights they started with; new requests get the new weights. A file that fails to load is
refused and the weights before it keep serving. ``kill -HUP`` does the same for ``python -m app``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.models.repository import RepositoryError
from app.schemas import ReloadReport, error_responses
from app.security.access import is_loopback
from app.serving import ServiceDep, SettingsDep

router = APIRouter(tags=["admin"])


def require_loopback(request: Request) -> None:
    if not is_loopback(request.client.host if request.client else ""):
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
    except (RepositoryError, OSError) as exc:  # OSError: a file vanished while it was read
        raise ClientError(409, f"nothing reloaded: {exc}; try again once the files are in place") from None
