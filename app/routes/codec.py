"""``POST /compress`` and ``POST /decompress``: lossless compression with the model.

Codec jobs run on the inference worker as their own batch (never merged with others), since
decoding must repeat exactly the batch shapes that encoding used.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import torch
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile as StarletteUpload

from app.durable.callbacks import record_callback
from app.errors import ClientError
from app.imaging import png_bytes, to_uint8_images
from app.jobs import CompressJob, DecompressJob
from app.routes.uploads import image_upload
from app.schemas import CompressResponse, Format, error_responses
from app.serving import MODEL_HEADER, ServiceDep, ServingDep, SettingsDep, resolve
from model.codec.container import CodecError, unpack
from model.pictures import image_grid, to_model_values

router = APIRouter(tags=["compression"])

COMPRESSED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CompressResponse,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the compressed bytes (sizes in the X-Bytes and X-Bits-Per-Dim headers), or "
        "with format=json the bytes in base64 with the figures",
    },
    **error_responses(400, 404, 413, 415, 422, 503),
}
DECOMPRESS_MODEL = "which model decodes it; left out: the one whose weights made the data"
PNG: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the decompressed image, grayscale or RGB as the model codes them "
        "(a grid if the data held several)",
    },
    **error_responses(400, 404, 413, 415, 422, 503),
}


@router.post("/compress", responses=COMPRESSED, response_class=Response)
async def compress_image(
    serving: ServingDep,
    settings: SettingsDep,
    request: Request,
    image: Annotated[
        list[UploadFile],
        File(description="PNG, JPEG, WebP, BMP or GIF, any mode; repeat the field for more images"),
    ],
    invert: Annotated[bool, Form(description="the uploads are dark on light")] = False,
    format: Annotated[Format | None, Form(description="'json' for base64 with the figures")] = None,
) -> Response:
    """Compress images losslessly (after conversion to the model's size, in grayscale, or in RGB for a
    colour model) into one container.

    One request may carry up to `max_images` images (64 by default; more is a 413), as repeated
    `image` fields, in the order `/decompress` returns them. They share the 13-byte header and
    are coded 32 side by side, so many images in one request cost less per image than a request
    each, in bytes and in time: with the shipped weights on a 2-core CPU, 64 images take about
    3.3 s to encode and 5.5 s to decode, one image 0.35 s and 0.38 s (`python -m
    bench.compression`). Each image's label is the server's classifier's guess of its class
    (where the classifier does not fit the model, a colour one say, the label that costs the
    fewest bits). Bits/dim count every colour of every pixel. A request counts as its number
    of images against the queue, and holds the model for that long.
    """
    if len(image) > settings.max_images:
        raise ClientError(
            413, f"{len(image)} images in one request; this server compresses at most {settings.max_images}"
        )
    uploads = [
        await image_upload(upload, settings, serving.size, invert, serving.colours) for upload in image
    ]
    values = torch.stack([to_model_values(upload.pixels, serving.levels) for upload in uploads])

    data, _ideal_bits = await serving.submit(CompressJob(values), request)
    bits_per_dim = 8 * len(data) / values.numel()  # every colour of every pixel is a dimension
    headers = {
        "X-Bytes": str(len(data)),
        "X-Bits-Per-Dim": f"{bits_per_dim:.4f}",
        "X-Images": str(len(values)),
    }
    if format == "json":
        body = CompressResponse(
            data_base64=base64.b64encode(data).decode(), bytes=len(data), bits_per_dim=bits_per_dim
        )
        return JSONResponse(body.model_dump(), headers=headers)
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.post(
    "/decompress",
    responses=PNG,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "data": {"type": "string", "format": "binary"},
                            "model": {"type": "string", "description": DECOMPRESS_MODEL},
                        },
                        "required": ["data"],
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def decompress_data(service: ServiceDep, settings: SettingsDep, request: Request) -> Response:
    """Decompress bytes from ``/compress`` (multipart field ``data``, or a raw octet-stream body).

    The data records which weights made it: with no model named (a ``model`` form field, or
    the ``serve_multiplexed_model_id`` header), the model whose weights those are decodes it;
    naming another model is a 400 that says which one the data needs."""
    content_type = request.headers.get("content-type", "")
    name: str | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        chosen = form.get("model")
        if chosen is not None and not isinstance(chosen, str):
            raise ClientError(422, "'model' must be a text field naming a model (GET /models lists them)")
        name = chosen or None
        callback = form.get("callback_url")
        record_callback(callback if isinstance(callback, str) else None, settings)
        field = form.get("data")
        if field is None:
            raise ClientError(
                422, "'data' is missing: send the compressed bytes as the multipart file 'data'"
            )
        if not isinstance(field, StarletteUpload):  # what request.form() gives
            raise ClientError(
                422, "'data' must be a file upload (the bytes from /compress), not a text field"
            )
        data = await field.read()
    elif content_type.startswith("application/octet-stream"):
        data = await request.body()
    else:
        raise ClientError(
            415,
            "send the compressed bytes as multipart/form-data field 'data' or as application/octet-stream",
        )
    if not data:
        raise ClientError(400, "the compressed data is empty")
    try:
        header = unpack(data)[0]  # cheap checks first: a forged count must not cost compute
    except CodecError as exc:
        raise ClientError(400, f"cannot decompress: {exc}") from None
    if header.count == 0:
        raise ClientError(400, "cannot decompress: the data holds no images")
    if header.count > settings.max_images:
        raise ClientError(
            413,
            f"the data holds {header.count} images; this server decompresses at most {settings.max_images}",
        )
    owner = service.registry.codec_owner(header.weights)
    named = name or request.headers.get(MODEL_HEADER) or None
    serving = await resolve(request, name or (None if named else owner))
    if owner is not None and serving.codec_hash != header.weights:
        raise ClientError(
            400, f"this data was compressed by model {owner!r}, not {serving.name!r}: send model={owner}"
        )

    images = await serving.submit(DecompressJob(data, header.count), request)
    pixels = to_uint8_images(images, serving.levels)
    n = pixels.shape[0]
    grid = image_grid(pixels, 1, padding=0) if n == 1 else image_grid(pixels, columns=int(n**0.5 + 0.999))
    return Response(png_bytes(grid), media_type="image/png", headers={"X-Images": str(n)})
