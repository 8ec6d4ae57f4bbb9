"""``POST /complete``: fill the masked region of an uploaded image."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.imaging import parse_box
from app.particle_jobs import CompleteJob, Completion
from app.rendering import images_response
from app.routes.generate import PNG_OR_JSON
from app.routes.particle_form import ParticleFormDep
from app.routes.uploads import image_upload, mask_upload
from app.schemas import Format, error_responses
from app.serving import ServingDep, SettingsDep
from app.streaming import stream, wants_stream
from model.pictures import to_model_values

router = APIRouter(tags=["complete"])


def choose_region(
    mask: np.ndarray | None, box: str | None, transparent: np.ndarray | None, size: int
) -> np.ndarray:
    """Exactly one source of the region to fill: a mask image, a box, or the image's alpha."""
    if mask is not None and box:
        raise ClientError(422, "send either a 'mask' image or a 'box', not both")
    if mask is not None:
        region = mask
    elif box:
        region = parse_box(box, size)
    elif transparent is not None and transparent.any():
        region = transparent
    else:
        raise ClientError(
            422,
            "no region to fill: send a 'mask' image (white = fill), a 'box' x0,y0,x1,y1 in model "
            "pixels, or an image whose transparent pixels mark the region",
        )
    if not region.any():
        raise ClientError(422, "the region to fill is empty: the mask selects no pixels (white = fill)")
    return region


@router.post(
    "/complete",
    responses={**PNG_OR_JSON, **error_responses(400, 404, 413, 415, 422, 503)},
    response_class=Response,
)
async def complete_image(
    serving: ServingDep,
    settings: SettingsDep,
    request: Request,
    image: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP or GIF; any mode")],
    mask: Annotated[UploadFile | None, File(description="white = pixels to fill")] = None,
    box: Annotated[str | None, Form(description="x0,y0,x1,y1 in model pixels, end-exclusive")] = None,
    *,
    form: ParticleFormDep,
) -> Response:
    """Complete the region given by ``mask``, ``box`` or the image's transparency; known pixels
    are kept exactly. ``particles`` > 1 makes completions agree with pixels after the hole.
    Each completion's class, given or inferred, is in ``X-Labels`` and in each JSON image.
    With ``Accept: text/event-stream`` the completions stream row by row (see ``app.streaming``)."""
    upload = await image_upload(image, settings, serving.size, form.invert, serving.colours)
    region = choose_region(
        await mask_upload(mask, settings, serving.size), box, upload.transparent, serving.size
    )
    values = to_model_values(upload.pixels, serving.levels)
    region_tensor = torch.from_numpy(region.copy())

    def finish(result: Completion, fmt: Format = "json") -> Response:
        images, bits, used = result
        # The label each completion was drawn with: the one asked for, or the one it inferred.
        labels: list[int | None] = [None] * form.n if used is None else [int(y) for y in used]
        return images_response(
            images,
            form.seeds,
            labels,
            bits,
            levels=serving.levels,
            fmt=fmt,
            scale=form.scale,
            info=serving.info,
        )

    job = CompleteJob(
        image=values,
        mask=region_tensor,
        n=form.n,
        label=form.label,
        seeds=form.seeds,
        temperature=form.temperature,
        particles=form.particles,
    )
    if wants_stream(request):
        return stream(serving, job, finish, scale=form.scale, known=~region_tensor.bool())
    return await run_in_threadpool(finish, await serving.submit(job, request), form.format)
