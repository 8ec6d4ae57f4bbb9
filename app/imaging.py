"""Turning uploads into model inputs, and model outputs into PNGs.

Uploads are decoded only by the decoders of the accepted formats (so Pillow never runs an
exotic decoder on user input), their pixel count is checked before any pixel is decoded,
and whatever their mode they become one grayscale image of the model's size.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ClientError, shown
from model.data import dequantize, quantize

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED_TEXT = "PNG, JPEG, WebP, BMP or GIF"


@dataclass(frozen=True)
class Upload:
    gray: np.ndarray  # (size, size) uint8 0..255, light-on-dark like Fashion-MNIST
    transparent: np.ndarray | None  # (size, size) bool, True where alpha < 50%, if it had alpha


def signature_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM") and len(data) >= 14:
        return "BMP"
    return None


def open_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Identify and size-check an upload without decoding its pixels yet."""
    if not data:
        raise ClientError(400, f"'{field}' is empty: upload a {ACCEPTED_TEXT} image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ClientError(413, f"'{field}' has too many pixels to decode safely") from None
    except UnidentifiedImageError:
        if (kind := signature_format(data)) is not None:
            raise ClientError(400, f"'{field}' is a damaged {kind}: it could not be read") from None
        raise ClientError(
            415, f"'{field}' is not an image in an accepted format: send {ACCEPTED_TEXT}"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ClientError(400, f"'{field}' could not be read as an image ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ClientError(400, f"'{field}' is a damaged image: it declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise ClientError(
            413, f"'{field}' is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted"
        )
    return image


# Larger uploads are BOX-averaged in their own mode (8-bit for most) down to at most this many
# times the model's size a side before any float array exists, so the float arrays stay small
# (112x112 for 28x28). The intermediate being a multiple of the model's size, each output pixel
# averages the same source pixels as a direct BOX would: results differ from it by the 8-bit
# rounding of the intermediate, at most 1 gray level on photos and 3 on 1-bit art (measured).
SHRINK_TO = 4
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
SUPPORTED_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX", *HIGH_DEPTH_MODES)


def _decode(image: Image.Image, field: str) -> Image.Image:
    """Decode the first frame at full size (not JPEG's DCT scaling: a 2000x2000 JPEG decoded
    at 1/8 scale, then BOX-averaged, is off by up to 8 gray levels from the full image's BOX)."""
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ClientError(400, f"'{field}' is truncated or corrupt ({exc})") from None
    if image.mode not in SUPPORTED_MODES:
        raise ClientError(415, f"'{field}' has pixel mode {image.mode}, which is not supported")
    return image


def _shrink(image: Image.Image, size: int) -> Image.Image:
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


def _to_gray_and_alpha(
    image: Image.Image, size: int, invert: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Any mode -> float gray 0..255 ``(h, w)`` and alpha 0..1 ``(h, w)`` (None if opaque),
    with ``h, w <= SHRINK_TO * size``: a large image is shrunk before it becomes floats.

    Transparent pixels are background (black) in ``gray``, after ``invert`` if asked.
    """
    if image.mode in HIGH_DEPTH_MODES:  # 16- or 32-bit gray: shrunk in its own mode, no alpha
        high = image.getextrema()[1]
        top = 65535.0 if image.mode.startswith("I;16") or float(high) > 255 else 255.0  # type: ignore[arg-type]
        values = np.asarray(_shrink(image, size), dtype=np.float32)
        gray = np.clip(values * (255.0 / top), 0, 255)
        return (255.0 - gray if invert else gray), None
    shrunk = np.asarray(_shrink(_gray8(image, invert), size), dtype=np.float32)
    if shrunk.ndim == 2:
        return shrunk, None
    return shrunk[..., 0], shrunk[..., 1] / 255.0


def _resize(values: np.ndarray, size: int) -> np.ndarray:
    """float ``(h, w)`` -> float64 ``(size, size)``: BOX when shrinking both sides, else bilinear."""
    if values.shape == (size, size):
        return values.astype(np.float64)
    picture = Image.fromarray(values.astype(np.float32))
    return np.asarray(
        picture.resize(
            (size, size), Image.Resampling.BOX if min(values.shape) >= size else Image.Resampling.BILINEAR
        ),
        dtype=np.float64,
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation in place; damaged EXIF is ignored (the pixels are still fine)."""
    with contextlib.suppress(Exception):  # Pillow raises several types for malformed EXIF blocks
        ImageOps.exif_transpose(image, in_place=True)
    return image


def _load(data: bytes, field: str, max_pixels: int) -> Image.Image:
    return _upright(_decode(open_image(data, field, max_pixels), field))


def read_upload(data: bytes, field: str, size: int, max_pixels: int, invert: bool = False) -> Upload:
    """Decode an uploaded image into the model's size (grayscale, alpha kept separately).

    Whatever its size, no float array larger than ``SHRINK_TO * size`` a side is made.
    """
    gray, alpha = _to_gray_and_alpha(_load(data, field, max_pixels), size, invert)
    transparent = None if alpha is None else _resize(alpha, size) < 0.5
    return Upload(np.clip(np.rint(_resize(gray, size)), 0, 255).astype(np.uint8), transparent)


def read_mask(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """A mask image (white = fill) -> ``(size, size)`` bool, resized to the model's size."""
    gray, _ = _to_gray_and_alpha(_load(data, "mask", max_pixels), size)
    return _resize(gray, size) >= 127.5  # transparent mask pixels count as black (keep)


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
    """Model values ``(N, 1, H, W)`` -> displayable uint8 intensities."""
    return dequantize(values, levels)


def to_model_values(gray: np.ndarray, levels: int) -> torch.Tensor:
    """uint8 ``(H, W)`` intensities -> model values ``(1, H, W)`` int64."""
    return quantize(torch.from_numpy(gray.copy()).view(1, 1, *gray.shape), levels)[0]
