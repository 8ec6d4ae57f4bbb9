"""Model outputs into PNGs, and the service's box field. Uploads are read by
``model.pictures`` (the commands read files the same way); its ``ImageError`` becomes a 4xx
in ``app.errors``."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from app.errors import ClientError, shown
from model.data import dequantize


def parse_box(text: str, size: int) -> np.ndarray:
    """``"x0,y0,x1,y1"`` in model pixels, end-exclusive -> ``(size, size)`` bool mask."""
    parts = text.replace(" ", "").split(",")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise ClientError(422, f"box must be four integers 'x0,y0,x1,y1', got {shown(text)}") from None
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise ClientError(
            422,
            f"box {shown(text)} must satisfy 0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size} "
            "(model pixels, end-exclusive)",
        )
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def png_bytes(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def to_uint8_images(values: torch.Tensor, levels: int) -> torch.Tensor:
    """Model values ``(N, C, H, W)`` -> displayable uint8 intensities."""
    return dequantize(values, levels)
