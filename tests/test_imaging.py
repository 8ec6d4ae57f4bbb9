"""Uploads become model inputs without a full-size float array: a large image is shrunk in its
own mode (8-bit for most) first, and the result stays what a direct BOX resize gives."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from model.pictures import read_image, read_mask

SIDE = 2000


def big_rgba() -> np.ndarray:
    """``(SIDE, SIDE, 4)`` uint8: smooth colour waves, an opaque disc on a transparent ground."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    wave = (np.sin(xx * 54) * np.cos(yy * 38) + 1) * 127.5
    alpha = np.clip((0.4 - np.hypot(xx - 0.5, yy - 0.5)) * 2000, 0, 255)  # a soft edge
    return np.stack([wave, xx * 255, yy * 255, alpha], axis=-1).astype(np.uint8)


def png(values: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(values).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def rgba() -> np.ndarray:
    return big_rgba()


@pytest.mark.parametrize("channels", [1, 4], ids=["L", "RGBA"])
def test_a_large_upload_never_becomes_a_full_size_float_array(rgba: np.ndarray, channels: int) -> None:
    """Before: 48 MB traced for a 2000x2000 RGBA (three float32 arrays of 16 MB); now 0.2 MB."""
    data = png(rgba[..., 0] if channels == 1 else rgba)
    tracemalloc.start()
    try:
        upload = read_image(data, "image", 28, 4_000_000, invert=True)
        read_mask(data, 28, 4_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert upload.pixels.shape == (1, 28, 28)
    assert peak < SIDE * SIDE // 4, f"{peak / 1e6:.1f} MB traced"  # not even one 8-bit copy


@pytest.mark.parametrize("invert", [False, True])
def test_a_large_upload_is_what_a_direct_box_resize_gives(rgba: np.ndarray, invert: bool) -> None:
    """Shrinking in 8 bits first changes a pixel by at most one gray level; transparency is
    still background (black) after inverting."""
    upload = read_image(png(rgba), "image", 28, 4_000_000, invert)
    gray = np.asarray(Image.fromarray(rgba).convert("L"), dtype=np.float32)
    alpha = rgba[..., 3].astype(np.float32) / 255
    gray = (255 - gray if invert else gray) * alpha

    def box(values: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(values).resize((28, 28), Image.Resampling.BOX), dtype=np.float64)

    expected = np.clip(np.rint(box(gray)), 0, 255)
    assert np.abs(upload.pixels[0] - expected).max() <= 1
    assert upload.transparent is not None
    near_half = np.abs(box(alpha) - 0.5) < 0.01
    assert np.array_equal(upload.transparent[~near_half], (box(alpha) < 0.5)[~near_half])
    assert upload.pixels[0, 0, 0] == 0 and upload.transparent[0, 0]  # the transparent corner
