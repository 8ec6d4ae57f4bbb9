"""Reading a route's uploaded image off the event loop, with the service's limits."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from app.errors import ClientError
from app.imaging import Upload, read_mask, read_upload
from app.settings import Settings


async def read_bytes(upload: UploadFile | str | None, field: str, required: bool = True) -> bytes | None:
    if upload is None or upload == "":
        if required:
            raise ClientError(422, f"'{field}' is missing: send it as a multipart file field")
        return None
    if isinstance(upload, str):
        raise ClientError(422, f"'{field}' must be a file upload (multipart/form-data), not a text field")
    return await upload.read()


# Decoding a large upload briefly takes memory in proportion to its pixels: at most two at once.
DECODING = asyncio.Semaphore(2)


async def image_upload(
    upload: UploadFile | str | None, settings: Settings, size: int, invert: bool
) -> Upload:
    data = await read_bytes(upload, "image")
    assert data is not None
    async with DECODING:
        return await run_in_threadpool(read_upload, data, "image", size, settings.max_image_pixels, invert)


async def mask_upload(upload: UploadFile | str | None, settings: Settings, size: int) -> np.ndarray | None:
    data = await read_bytes(upload, "mask", required=False)
    if data is None:
        return None
    async with DECODING:
        return await run_in_threadpool(read_mask, data, size, settings.max_image_pixels)
