"""Server-sent events for a job the client watches: ``Accept: text/event-stream``.

A route builds its job as usual and, when ``wants_stream(request)``, answers with
``stream(...)`` instead of waiting. The job is queued first, so a full queue is still a plain
503 with JSON; once the stream has begun the client receives:

- ``progress``: ``{"rows": r, "of": H}`` after every row; about ten of them also carry
  ``"images"``, the partial images as base64 PNGs with the pixels not yet known in grey;
- ``result``: exactly the JSON body the route returns for ``format=json``;
- ``error``: ``{"status": ..., "detail": ...}`` for anything that goes wrong after the start.

Closing the stream cancels the job: it leaves the queue, or its images leave the running batch
at the next row; ``pixelcnn_rejections_total{reason="cancelled"}`` counts it. The events are
encoded by FastAPI's own server-sent events support (``fastapi.sse``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch
from fastapi import Request, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from mimeparse import MimeTypeParseException, parse_media_range, quality
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.imaging import png_bytes, to_uint8_images
from app.jobs import GenerateJob
from app.models.served import ServedModel
from app.particle_jobs import ParticleJob
from app.progress import Progress
from app.worker import Ticket
from model.pictures import image_grid

log = logging.getLogger("app")
GREY = 128  # a pixel the sampler has not drawn yet
EVENT_STREAM = "text/event-stream"
PLAIN_TYPES = ("image/png", "application/json")  # what a streamable route answers otherwise
# For a route's ``responses``: what a streamed answer is.
STREAM_RESPONSE: dict[str, Any] = {
    EVENT_STREAM: {
        "schema": {"type": "string"},
        "description": "with Accept: text/event-stream: progress, then result (or error) events",
    }
}


StreamedJob = GenerateJob | ParticleJob  # the jobs with a row hook


def wants_stream(request: Request) -> bool:
    """The client prefers server-sent events: its ``Accept`` names ``text/event-stream`` itself
    (not by a wildcard) with a q-value above 0 and no lower than any other type the route
    answers with (parsed by python-mimeparse; an unparsable header gets the plain answer)."""
    accept = request.headers.get("accept", "")
    try:
        named = any(parse_media_range(part)[:2] == ("text", "event-stream") for part in accept.split(","))
        stream_q = quality(EVENT_STREAM, accept) if named else 0.0
        plain_q = max(quality(kind, accept) for kind in PLAIN_TYPES)
    except (MimeTypeParseException, ValueError):
        return False
    return stream_q > 0 and stream_q >= plain_q


def event(name: str, data: Any) -> bytes:
    return format_sse_event(event=name, data_str=json.dumps(data, separators=(",", ":")))


def partial_pngs(
    images: torch.Tensor, rows: int, known: torch.Tensor | None, *, levels: int, scale: int
) -> list[str]:
    """Model values ``(n, C, H, W)`` after ``rows`` rows -> base64 PNGs, unknown pixels grey.

    ``known`` ``(H, W)`` bool: pixels given before sampling began (a completion's image).
    """
    pixels = to_uint8_images(images, levels).clone()
    size = pixels.shape[-2]
    unknown = torch.arange(size).view(-1, 1).expand(size, pixels.shape[-1]) >= rows
    if known is not None:
        unknown &= ~known
    pixels[:, :, unknown] = GREY
    return [
        base64.b64encode(png_bytes(image_grid(pixels[k : k + 1], 1, scale=scale, padding=0))).decode()
        for k in range(pixels.shape[0])
    ]


def stream(
    serving: ServedModel,
    job: StreamedJob,
    finish: Callable[[Any], Response],
    *,
    scale: int,
    known: torch.Tensor | None = None,
) -> EventSourceResponse:
    """Queue ``job`` (refusals raise here, before any event) and stream it; ``finish`` turns its
    result into the route's ``format=json`` response, whose body is the ``result`` event."""
    progress = Progress(asyncio.get_running_loop())
    job.progress = progress
    ticket = serving.enqueue(job)
    events = _events(serving, ticket, progress, finish, scale=scale, known=known)
    return EventSourceResponse(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(
    serving: ServedModel,
    ticket: Ticket,
    progress: Progress,
    finish: Callable[[Any], Response],
    *,
    scale: int,
    known: torch.Tensor | None,
) -> AsyncIterator[bytes]:
    size, levels = serving.size, serving.levels
    every = -(-size // 10)  # images with every `every`-th row: at most ten times a request
    waiting = asyncio.ensure_future(serving.worker.wait(ticket))
    waiting.add_done_callback(lambda _: progress.rows.put_nowait(None))  # after the last row
    try:
        while (item := await progress.rows.get()) is not None:
            rows, images = item
            data: dict[str, Any] = {"rows": rows, "of": size}
            if rows % every == 0:
                data["images"] = await run_in_threadpool(
                    partial_pngs, images, rows, known, levels=levels, scale=scale
                )
            yield event("progress", data)
        response = await run_in_threadpool(finish, waiting.result())
        yield format_sse_event(event="result", data_str=bytes(response.body).decode())
    except ClientError as exc:
        yield event("error", {"status": exc.status, "detail": exc.detail})
    except Exception:
        log.exception("streamed job failed")
        yield event("error", {"status": 500, "detail": "internal error: this is a bug in the server"})
    finally:
        if not waiting.done():  # the client closed the stream: drop the job
            progress.cancelled = True
            waiting.cancel()  # takes it out of the queue if it is still there
            ticket.future.cancel()  # nobody will read its result
            serving.worker.metrics.rejections.labels(reason="cancelled").inc()
