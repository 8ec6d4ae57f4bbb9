"""``/jobs/{id}``: a stored job's status, its result, its events, and cancelling it.

A job id is 32 hex digits (128 random bits): knowing it is what lets a client read the job.
With API keys configured, a job is also only visible to the key that submitted it (and to
admin keys); to any other it does not exist.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.durable.records import JobRecord, valid_job_id
from app.durable.runner import JobRunner
from app.durable.views import JobView, job_view, parameters
from app.errors import ClientError, shown
from app.schemas import error_responses
from app.security.access import current_client
from app.serving import SettingsDep, get_service
from app.settings import Settings
from app.streaming import STREAM_RESPONSE, event

router = APIRouter(tags=["jobs"])
POLL_S = 0.25  # how often an events stream looks at its job
MAX_EVENT_STREAMS = 64  # open at once in one process: each polls the store
DROPPED_HEADERS = {"content-length", "transfer-encoding", "connection"}


def get_jobs(request: Request) -> JobRunner:
    runner: JobRunner | None = getattr(get_service(request), "jobs", None)
    if runner is None:
        raise ClientError(503, "the job store is not open", headers={"Retry-After": "5"})
    return runner


JobsDep = Annotated[JobRunner, Depends(get_jobs)]


async def find(jobs: JobRunner, job_id: str, settings: Settings) -> JobRecord:
    if not valid_job_id(job_id):
        raise ClientError(
            422, f"{shown(job_id)} is not a job id: a job id is 32 hex digits, as the 202 answer gave it"
        )
    record = await run_in_threadpool(jobs.store.get, job_id)
    client = current_client.get()
    hidden = settings.api_keys_file is not None and record is not None and record.client != client.name
    if record is None or (hidden and not (client.key is not None and client.key.admin)):
        raise ClientError(
            404, f"no job {job_id}: never accepted here, or removed {settings.job_ttl_s:g} s after it ended"
        )
    return record


async def describe(jobs: JobRunner, record: JobRecord) -> JobView:
    position = await run_in_threadpool(jobs.store.position, record.id) if record.status == "queued" else None
    return job_view(record, position, await parameters(record.request))


@router.get("/jobs/{job_id}", responses=error_responses(404, 422))
async def job_status(job_id: str, jobs: JobsDep, settings: SettingsDep) -> JobView:
    """Status (queued, running, done, failed, cancelled), rows done, place in the queue, times,
    and the route with its parameters."""
    return await describe(jobs, await find(jobs, job_id, settings))


@router.get(
    "/jobs/{job_id}/result",
    response_class=Response,
    responses={
        200: {"description": "exactly the synchronous route's answer: PNG, JSON or bytes"},
        **error_responses(404, 409, 422),
    },
)
async def job_result(job_id: str, jobs: JobsDep, settings: SettingsDep) -> Response:
    """The answer the route would have given (a failed job's: its error); 409 until the job ends."""
    record = await find(jobs, job_id, settings)
    if record.result is None:
        detail = f"job {job_id} is {record.status}" + (
            "" if record.status == "cancelled" else ": no result yet"
        )
        return Response(
            json.dumps({"detail": detail, "status": record.status}),
            status_code=409,
            media_type="application/json",
        )
    headers = {k: v for k, v in record.result.headers if k.lower() not in DROPPED_HEADERS}
    return Response(record.result.body, status_code=record.result.status, headers=headers)


@router.get(
    "/jobs/{job_id}/events",
    response_class=Response,
    responses={
        200: {"content": STREAM_RESPONSE, "description": "progress, then result or error"},
        **error_responses(404, 422),
    },
)
async def job_events(job_id: str, jobs: JobsDep, settings: SettingsDep) -> EventSourceResponse:
    """Server-sent events from the job's current state: ``progress`` (rows, of, status, place in
    the queue) as it changes, then ``result`` (the status, when done) or ``error`` (failed or
    cancelled). A client may connect late or reconnect."""
    first = await find(jobs, job_id, settings)
    if jobs.event_streams >= MAX_EVENT_STREAMS:
        raise ClientError(
            503,
            f"{MAX_EVENT_STREAMS} job event streams are open; poll GET /jobs/{{id}} or retry",
            headers={"Retry-After": "5"},
        )

    async def events() -> AsyncIterator[bytes]:
        jobs.event_streams += 1
        try:
            async for message in job_messages():
                yield message
        finally:
            jobs.event_streams -= 1

    async def job_messages() -> AsyncIterator[bytes]:
        record: JobRecord | None = first
        seen = None
        while record is not None:
            position = (
                await run_in_threadpool(jobs.store.position, job_id) if record.status == "queued" else None
            )
            state = (record.status, record.rows, position)
            if record.is_finished:
                view = job_view(record, None, await parameters(record.request)).model_dump()
                name = "result" if record.status == "done" else "error"
                data = (
                    view
                    if name == "result"
                    else {
                        "status": 409 if record.status == "cancelled" else 500,
                        "detail": record.error or record.status,
                        "job": view,
                    }
                )
                yield event(name, data)
                return
            if state != seen:
                seen = state
                progress = {
                    "rows": record.rows,
                    "of": record.of_rows,
                    "status": record.status,
                    "position": position,
                }
                yield event("progress", progress)
            await asyncio.sleep(POLL_S)
            record = await run_in_threadpool(jobs.store.get, job_id)
        yield event("error", {"status": 404, "detail": f"job {job_id} was removed"})

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.delete("/jobs/{job_id}", responses=error_responses(404, 422))
async def cancel_job(job_id: str, jobs: JobsDep, settings: SettingsDep) -> JobView:
    """Cancel: a queued job leaves the queue at once, a running one stops at its next row; a
    finished job is left as it is. The answer is the job's status after it."""
    record = await find(jobs, job_id, settings)
    cancelled = await run_in_threadpool(jobs.store.cancel, record.id, time.time())
    if cancelled is not None and record.status == "queued" and cancelled.status == "cancelled":
        jobs.announce(cancelled)  # a running one is announced by the runner when it stops
    jobs.wake()
    return await describe(jobs, cancelled or record)
