"""What ``GET /jobs/{id}`` says of a job: its status, progress, place in the queue, times, and
the route with its parameters (read back from the stored request: the JSON body, or the
multipart fields, each upload as its file name and size)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from app.durable.records import JobRecord, StoredRequest


class JobView(BaseModel):
    id: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    route: str
    parameters: dict[str, Any] = Field(description="the request's fields (an upload: its name and size)")
    rows: int = Field(description="image rows drawn so far (of of_rows) while running")
    of_rows: int
    position: int | None = Field(description="jobs ahead of it while queued (0: next)")
    created: str = Field(description="ISO 8601 times, UTC")
    started: str | None
    finished: str | None
    result: str | None = Field(description="where the finished answer is")
    error: str | None = Field(description="why it failed")


def _time(seconds: float | None) -> str | None:
    return (
        None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    )


async def parameters(request: StoredRequest) -> dict[str, Any]:
    headers = Headers(raw=[(k.lower().encode(), v.encode()) for k, v in request.headers])
    kind = headers.get("content-type", "")
    try:
        if kind.startswith("application/json"):
            body = json.loads(request.body)
            return body if isinstance(body, dict) else {"body": body}
        if kind.startswith("multipart/form-data"):

            async def stream() -> Any:
                yield request.body

            form = await MultiPartParser(headers, stream()).parse()
            fields: dict[str, Any] = {}
            for name, value in form.multi_items():
                shown: Any = (
                    {"filename": value.filename, "bytes": value.size}
                    if isinstance(value, UploadFile)
                    else value
                )
                fields[name] = shown if name not in fields else [*_as_list(fields[name]), shown]
            return fields
    except Exception:  # the route accepted it; what cannot be read back is shown as its size
        pass
    return {"bytes": len(request.body)} if request.body else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def job_view(record: JobRecord, position: int | None, fields: dict[str, Any] | None = None) -> JobView:
    return JobView(
        id=record.id,
        status=record.status,
        route=record.route,
        parameters=fields or {},
        rows=record.rows,
        of_rows=record.of_rows,
        position=position,
        created=_time(record.created) or "",
        started=_time(record.started),
        finished=_time(record.finished),
        result=f"/jobs/{record.id}/result" if record.status == "done" else None,
        error=record.error,
    )
