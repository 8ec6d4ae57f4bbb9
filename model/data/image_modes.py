"""Any Pillow image mode as the model's planes: 8-bit gray or RGB floats, with alpha apart.

Transparent pixels become background (black) in every mode, premultiplied by alpha, so that a
drawing on a transparent canvas reads as light-on-dark; 16- and 32-bit gray keeps its range.
A large image is BOX-averaged in its own mode before any float array exists (``shrink``).
``model.pictures`` decodes files and calls these.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from model.data.arrays import resize_to_uint8

# Larger images are BOX-averaged in their own mode (8-bit for most) down to at most this many
# times the model's size a side before any float array exists, so the float arrays stay small
# (112x112 for 28x28). The intermediate being a multiple of the model's size, each output pixel
# averages the same source pixels as a direct BOX would: results differ from it by the 8-bit
# rounding of the intermediate, at most 1 gray level on photos and 3 on 1-bit art (measured).
SHRINK_TO = 4
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
SUPPORTED_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX", *HIGH_DEPTH_MODES)


def shrink(image: Image.Image, size: int) -> Image.Image:
    """BOX-average ``image`` in its own mode to at most ``SHRINK_TO * size`` pixels a side."""
    limit = SHRINK_TO * size
    target = (min(image.width, limit), min(image.height, limit))
    return image if target == image.size else image.resize(target, Image.Resampling.BOX)


def _gray8(image: Image.Image, invert: bool) -> Image.Image:
    """An 8-bit mode -> ``"L"``, or ``"La"`` (gray premultiplied by alpha) if it has alpha.

    ``invert`` flips dark-on-light to light-on-dark before the premultiplication, so that
    transparent pixels become background (black) either way. Full size, 8 bits a sample.
    """
    if image.mode == "P":  # palette colours, with their transparency if any
        image = image.convert("LA" if "transparency" in image.info else "L")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:  # a tRNS colour key
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    elif image.mode in ("PA", "CMYK"):
        image = image.convert("RGBA" if image.mode == "PA" else "RGB")
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    gray = image.convert("L")
    if invert:
        gray = ImageOps.invert(gray)
    if alpha is None:
        return gray
    return Image.merge("LA", (gray, alpha)).convert("La")  # gray * alpha / 255, rounded


def to_gray_and_alpha(
    image: Image.Image, size: int, invert: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Any mode -> float gray 0..255 ``(h, w)`` and alpha 0..1 ``(h, w)`` (None if opaque),
    with ``h, w <= SHRINK_TO * size``: a large image is shrunk before it becomes floats.

    Transparent pixels are background (black) in ``gray``, after ``invert`` if asked.
    """
    if image.mode in HIGH_DEPTH_MODES:  # 16- or 32-bit gray: shrunk in its own mode, no alpha
        gray = _high_depth_gray(image, size)
        return (255.0 - gray if invert else gray), None
    shrunk = np.asarray(shrink(_gray8(image, invert), size), dtype=np.float32)
    if shrunk.ndim == 2:
        return shrunk, None
    return shrunk[..., 0], shrunk[..., 1] / 255.0


def _high_depth_gray(image: Image.Image, size: int) -> np.ndarray:
    """A 16- or 32-bit gray image, shrunk in its own mode -> float 0..255 ``(h, w)``."""
    high = image.getextrema()[1]
    top = 65535.0 if image.mode.startswith("I;16") or float(high) > 255 else 255.0  # type: ignore[arg-type]
    values = np.asarray(shrink(image, size), dtype=np.float32)
    return np.clip(values * (255.0 / top), 0, 255)


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or image.mode == "PA" or "transparency" in image.info


def to_colour_and_alpha(
    image: Image.Image, size: int, invert: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Any mode -> float RGB 0..255 ``(3, h, w)`` and alpha 0..1 ``(h, w)`` (None if opaque),
    ``h, w <= SHRINK_TO * size``. Transparent pixels become black (premultiplied by alpha,
    after ``invert`` if asked), as they do in grayscale; gray images become three equal
    channels."""
    if image.mode in HIGH_DEPTH_MODES:
        gray = _high_depth_gray(image, size)
        gray = 255.0 - gray if invert else gray
        return np.stack([gray, gray, gray]), None
    if not _has_alpha(image):
        rgb = image.convert("RGB")
        rgb = ImageOps.invert(rgb) if invert else rgb
        return np.asarray(shrink(rgb, size), dtype=np.float32).transpose(2, 0, 1), None
    rgba = image.convert("RGBA")
    if invert:
        rgba = Image.merge("RGBA", (*ImageOps.invert(rgba.convert("RGB")).split(), rgba.getchannel("A")))
    values = np.asarray(shrink(rgba.convert("RGBa"), size), dtype=np.float32)
    return values[..., :3].transpose(2, 0, 1), values[..., 3] / 255.0


def resized(
    image: Image.Image, size: int, colours: int, invert: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """A decoded image -> uint8 ``(colours, size, size)`` (1: gray, 3: RGB) and its alpha
    (float ``(h, w)`` before resizing, None if opaque)."""
    if colours == 1:
        gray, alpha = to_gray_and_alpha(image, size, invert)
        return resize_to_uint8(gray, size)[None], alpha
    planes, alpha = to_colour_and_alpha(image, size, invert)
    return np.stack([resize_to_uint8(plane, size) for plane in planes]), alpha
