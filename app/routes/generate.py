"""``POST /generate``: sample new images."""

from __future__ import annotations

import random
from typing import Any

import torch
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.durable.callbacks import record_callback
from app.durable.context import choose_seed
from app.errors import ClientError
from app.jobs import GenerateJob
from app.rendering import images_response
from app.schemas import (
    SEED_LIMIT,
    Format,
    GenerateRequest,
    ImagesResponse,
    check_seed,
    error_responses,
    parse_label,
)
from app.serving import ServiceDep, SettingsDep, resolve
from app.streaming import STREAM_RESPONSE, stream, wants_stream
from model.inference.sampling import check_labels, per_image_noise

router = APIRouter(tags=["generate"])

PNG_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ImagesResponse,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}, **STREAM_RESPONSE},
        "description": "format=png: a PNG (one image, or a grid), seeds in the X-Seeds header; "
        "format=json: one PNG per image with its seed, label and bits/dim; "
        "Accept: text/event-stream: server-sent progress events with partial images, then the "
        "format=json body as a result event",
    },
}


@router.post(
    "/generate",
    responses={**PNG_OR_JSON, **error_responses(400, 404, 413, 422, 503)},
    response_class=Response,
)
async def generate(
    body: GenerateRequest, service: ServiceDep, settings: SettingsDep, request: Request
) -> Response:
    """Sample ``n`` images. Image i uses seed ``seed + i``, so any image can be made again alone.
    With ``Accept: text/event-stream`` the images stream row by row (see ``app.streaming``)."""
    if body.n > settings.max_images:
        raise ClientError(422, f"n = {body.n} is too many: at most {settings.max_images} images per request")
    check_seed(body.seed, body.n)
    record_callback(body.callback_url, settings)
    serving = await resolve(request, body.model)
    model = serving.model
    label = parse_label(body.label, model.config.label_names)
    base = body.seed if body.seed is not None else choose_seed(random.randrange(SEED_LIMIT - body.n + 1))
    seeds = [base + i for i in range(body.n)]
    labels = check_labels(model, label, body.n, seeds)
    noise = per_image_noise(seeds, serving.colours * serving.size**2)
    temperatures = torch.full((body.n,), body.temperature, dtype=torch.float64)
    label_list: list[int | None] = [None] * body.n if labels is None else [int(y) for y in labels]

    def finish(result: tuple[torch.Tensor, torch.Tensor], fmt: Format = "json") -> Response:
        images, bits = result
        return images_response(
            images,
            seeds,
            label_list,
            bits,
            levels=serving.levels,
            fmt=fmt,
            scale=body.scale,
            info=serving.info,
        )

    job = GenerateJob(noise, labels, temperatures)
    if wants_stream(request):
        return stream(serving, job, finish, scale=body.scale)
    return await run_in_threadpool(finish, await serving.submit(job, request), body.format)
