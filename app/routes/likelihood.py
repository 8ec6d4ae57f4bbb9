"""``POST /likelihood``: per-pixel bits of an uploaded image, as JSON or a heatmap PNG."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from app.heatmap import render_heatmap
from app.jobs import LikelihoodJob
from app.routes.uploads import image_upload
from app.schemas import Format, LikelihoodResponse, error_responses, parse_label
from app.serving import ServingDep, SettingsDep
from model.pictures import to_model_values

router = APIRouter(tags=["likelihood"])

HEATMAP_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "model": LikelihoodResponse,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "description": "format=json: per-pixel bits and totals; format=png: a heatmap of per-pixel "
        "bits beside the input, with a colour scale",
    },
    **error_responses(400, 404, 413, 415, 422, 503),
}


@router.post("/likelihood", responses=HEATMAP_OR_JSON, response_class=Response)
async def likelihood(
    serving: ServingDep,
    settings: SettingsDep,
    request: Request,
    image: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP or GIF; any mode")],
    label: Annotated[str | None, Form(description="a class index or name; empty = sum over classes")] = None,
    invert: Annotated[bool, Form(description="the upload is dark on light")] = False,
    format: Annotated[Format, Form()] = "json",
) -> Response:
    """Score an image: -log2 p of every pixel given the pixels before it (and the label)."""
    chosen = parse_label(label, serving.model.config.label_names)
    upload = await image_upload(image, settings, serving.size, invert, serving.colours)
    values = to_model_values(upload.pixels, serving.levels).unsqueeze(0)
    labels = None if chosen is None else torch.tensor([chosen])
    result = await serving.submit(LikelihoodJob(values, labels), request)
    channel_bits = (-result.log2_probs[0]).double()  # (H, W) grayscale, (3, H, W) colour
    bits = channel_bits.sum(0) if serving.colours > 1 else channel_bits  # (H, W) per pixel
    bits_per_dim = float(result.bits_per_dim[0])
    if format == "png":
        png = await render_heatmap(upload.pixels, bits.numpy(), bits_per_dim)
        return Response(png, media_type="image/png", headers={"X-Bits-Per-Dim": f"{bits_per_dim:.4f}"})
    posterior = None
    if result.class_posterior is not None:
        names = serving.model.config.label_names
        posterior = {names[k]: float(p) for k, p in enumerate(result.class_posterior[0])}
    body = LikelihoodResponse(
        bits=[[round(float(b), 5) for b in row] for row in bits],
        channel_bits=None
        if serving.colours == 1
        else [[[round(float(b), 5) for b in row] for row in plane] for plane in channel_bits],
        total_bits=float(result.total_bits[0]),
        bits_per_dim=bits_per_dim,
        label=chosen,
        class_posterior=posterior,
    )
    # A grayscale model's answer keeps the fields it always had.
    dropped = {"channel_bits"} if serving.colours == 1 else None
    return Response(body.model_dump_json(exclude=dropped), media_type="application/json")
