"""Shaping sampled images into the two response formats: a PNG (grid) or JSON."""

from __future__ import annotations

import base64
from typing import Any

import torch
from fastapi import Response
from fastapi.responses import JSONResponse

from app.imaging import png_bytes, to_uint8_images
from app.schemas import Format, ImageResult, ImagesResponse, ModelInfo
from model.pictures import image_grid


def images_response(
    values: torch.Tensor,
    seeds: list[int] | list[None],
    labels: list[int | None],
    bits: torch.Tensor,
    *,
    levels: int,
    fmt: Format,
    scale: int,
    info: ModelInfo,
    extra: dict[str, Any] | None = None,
) -> Response:
    """``values`` ``(n, C, H, W)`` model values (C = 1 gray, 3 RGB) and ``bits`` ``(n,)`` total
    bits per image;
    ``extra``: more fields for the JSON body (a route's subclass of ``ImagesResponse``)."""
    pixels = to_uint8_images(values, levels)
    per_dim = (bits.double() / values[0].numel()).tolist()  # dims: H x W x C
    headers = {
        "X-Seeds": ",".join("" if s is None else str(s) for s in seeds),
        "X-Labels": ",".join("" if y is None else str(y) for y in labels),
        "X-Bits-Per-Dim": ",".join(f"{b:.4f}" for b in per_dim),
    }
    if fmt == "png":
        n = pixels.shape[0]
        if n == 1:
            grid = image_grid(pixels, 1, scale=scale, padding=0)
        else:
            grid = image_grid(pixels, columns=int(n**0.5 + 0.999), scale=scale)
        return Response(png_bytes(grid), media_type="image/png", headers=headers)
    results = [
        ImageResult(
            seed=seed,
            label=label,
            label_name=None if label is None else info.classes[label] if info.classes else str(label),
            png_base64=base64.b64encode(
                png_bytes(image_grid(pixels[k : k + 1], 1, scale=scale, padding=0))
            ).decode(),
            bits_per_dim=per_dim[k],
        )
        for k, (seed, label) in enumerate(zip(seeds, labels, strict=True))
    ]
    body = ImagesResponse(images=results, model=info).model_dump()
    return JSONResponse({**body, **(extra or {})}, headers=headers)
