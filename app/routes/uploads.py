"""Reading a route's uploaded image off the event loop, with the service's limits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from fastapi import UploadFile

from app.errors import ClientError
from app.settings import Settings
from model.pictures import UploadedImage, read_image, read_mask

T = TypeVar("T")


async def read_bytes(upload: UploadFile | str | None, field: str, required: bool = True) -> bytes | None:
    if upload is None or upload == "":
        if required:
            raise ClientError(422, f"'{field}' is missing: send it as a multipart file field")
        return None
    if isinstance(upload, str):
        raise ClientError(422, f"'{field}' must be a file upload (multipart/form-data), not a text field")
    return await upload.read()


# Decoding a large upload briefly takes memory in proportion to its pixels (8-bit: 16 MB for a
# 2000x2000 RGB PNG), and glibc keeps what a thread frees in that thread's arena for reuse. So
# decoding runs in two threads of its own, not in any of the server's thread pool: at most two
# at once, and only two arenas ever hold decode buffers, whatever the load. A thread pool, not
# an asyncio.Semaphore, is also safe to share between event loops (servers in tests).
DECODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")


async def decoded(read: Callable[..., T], *args: Any) -> T:
    """``read(*args)`` in a decoding thread, off the event loop; waits while both are busy
    (a request cancelled while it waits never decodes)."""
    return await asyncio.get_running_loop().run_in_executor(DECODERS, functools.partial(read, *args))


async def image_upload(
    upload: UploadFile | str | None, settings: Settings, size: int, invert: bool, colours: int
) -> UploadedImage:
    """The upload at the model's size: ``colours`` 1 reads it as grayscale, 3 as RGB."""
    data = await read_bytes(upload, "image")
    assert data is not None
    return await decoded(read_image, data, "image", size, settings.max_image_pixels, invert, colours)


async def mask_upload(upload: UploadFile | str | None, settings: Settings, size: int) -> np.ndarray | None:
    data = await read_bytes(upload, "mask", required=False)
    if data is None:
        return None
    return await decoded(read_mask, data, size, settings.max_image_pixels)
