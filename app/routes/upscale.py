"""``POST /upscale``: super-resolution of a small image into full-size images that agree with it."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import torch
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.imaging import png_bytes, to_uint8_images
from app.particle_jobs import Completion, UpscaleJob
from app.rendering import images_response
from app.routes.particle_form import ParticleFormDep
from app.routes.uploads import decoded, read_bytes
from app.schemas import Format, UpscaleResponse, error_responses
from app.serving import ServingDep, SettingsDep
from app.streaming import STREAM_RESPONSE, stream, wants_stream
from model.pictures import image_grid, read_small_image

router = APIRouter(tags=["upscale"])

PNG_OR_UPSCALE_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "model": UpscaleResponse,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}, **STREAM_RESPONSE},
        "description": "format=png: a PNG (one image, or a grid), seeds in X-Seeds, the factor in "
        "X-Factor; format=json: one PNG per image with its seed, label and bits/dim, the small "
        "image and its bicubic enlargement; Accept: text/event-stream: progress events, then "
        "the JSON body as the result event",
    },
}


def _png_base64(values: torch.Tensor, levels: int, size: int | None = None) -> str:
    """Model values ``(C, h, w)`` as a base64 PNG, enlarged to ``size`` by Pillow's bicubic."""
    picture = image_grid(to_uint8_images(values.unsqueeze(0), levels), 1, padding=0)
    if size is not None:
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    return base64.b64encode(png_bytes(picture)).decode()


@router.post(
    "/upscale",
    responses={**PNG_OR_UPSCALE_JSON, **error_responses(400, 404, 413, 415, 422, 503)},
    response_class=Response,
)
async def upscale_image(
    serving: ServingDep,
    settings: SettingsDep,
    request: Request,
    image: Annotated[
        UploadFile,
        File(
            description="the small image: the model's size divided by one of its factors (GET /model "
            "lists them; 14x14, 7x7 or 4x4 for a 28x28 model), or any larger image with 'factor' "
            "(resized to the model's size, then shrunk by block means); PNG, JPEG, WebP, BMP or GIF, any mode"
        ),
    ],
    factor: Annotated[
        int | None,
        Form(
            description="one of the model's upscale_factors (2, 4 or 7 for 28x28); needed only for an image "
            "that is not already a small size"
        ),
    ] = None,
    *,
    form: ParticleFormDep,
) -> Response:
    """Sample ``n`` images of the model's size whose f x f block means, rounded half up, are exactly the small
    image. Result i uses seed ``seed + i``; its class, given or inferred, is in ``X-Labels``.

    Example: ``curl -s -X POST localhost:8000/upscale -F image=@small7x7.png -F n=4 -o big.png``
    (a 7x7 image: factor 4), or ``-F image=@shoe.png -F factor=7 -F format=json`` for any image."""
    data = await read_bytes(image, "image")
    assert data is not None
    small, chosen = await decoded(
        read_small_image,
        data,
        "image",
        serving.size,
        serving.levels,
        factor,
        settings.max_image_pixels,
        form.invert,
        serving.colours,
    )

    extra = {
        "factor": chosen,
        "small_png_base64": _png_base64(small, serving.levels),
        "bicubic_png_base64": _png_base64(small, serving.levels, serving.size),
    }

    def finish(result: Completion, fmt: Format = "json") -> Response:
        images, bits, used = result
        # The label each result was drawn with: the one asked for, or the one it inferred.
        labels: list[int | None] = [None] * form.n if used is None else [int(y) for y in used]
        response = images_response(
            images,
            form.seeds,
            labels,
            bits,
            levels=serving.levels,
            fmt=fmt,
            scale=form.scale,
            info=serving.info,
            extra=extra if fmt == "json" else None,
        )
        response.headers["X-Factor"] = str(chosen)
        return response

    job = UpscaleJob(
        small=small,
        factor=chosen,
        n=form.n,
        label=form.label,
        seeds=form.seeds,
        temperature=form.temperature,
        particles=form.particles,
    )
    if wants_stream(request):
        return stream(serving, job, finish, scale=form.scale)
    return await run_in_threadpool(finish, await serving.submit(job, request), form.format)
