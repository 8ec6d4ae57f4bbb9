"""Turning uploads into model inputs, and model outputs into PNGs.

Uploads are decoded only by the decoders of the accepted formats (so Pillow never runs an
exotic decoder on user input), their pixel count is checked before any pixel is decoded,
and whatever their mode they become one grayscale image of the model's size.
"""

from __future__ import annotations

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


def _decode(image: Image.Image, field: str) -> Image.Image:
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ClientError(400, f"'{field}' is truncated or corrupt ({exc})") from None
    return image


def _to_gray_and_alpha(image: Image.Image, invert: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Any mode -> float gray 0..255 ``(H, W)`` and alpha 0..1 ``(H, W)`` (None if opaque).

    ``invert`` flips dark-on-light to light-on-dark before transparent pixels become
    background (black), so transparency means background either way.
    """
    mode = image.mode
    alpha = None
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if mode == "L" else "RGBA")  # a tRNS colour key
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        gray16 = np.clip(values * (255.0 / top), 0, 255)
        return (255.0 - gray16 if invert else gray16), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        image = image.convert("RGBA").convert("RGB") if mode not in ("LA", "La") else image.convert("L")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    if invert:
        gray = 255.0 - gray
    if alpha is not None:
        gray = gray * alpha  # transparent pixels become background (black)
    return gray, alpha


def _resize(values: np.ndarray, size: int) -> np.ndarray:
    if values.shape == (size, size):
        return values
    picture = Image.fromarray(values.astype(np.float32))
    return np.asarray(
        picture.resize(
            (size, size), Image.Resampling.BOX if min(values.shape) >= size else Image.Resampling.BILINEAR
        ),
        dtype=np.float64,
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; damaged EXIF is ignored (the pixels are still fine)."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # Pillow raises several types for malformed EXIF blocks
        return image


def read_upload(data: bytes, field: str, size: int, max_pixels: int, invert: bool = False) -> Upload:
    """Decode an uploaded image into the model's size (grayscale, alpha kept separately)."""
    image = _decode(open_image(data, field, max_pixels), field)
    if image.mode not in (
        "1",
        "L",
        "P",
        "RGB",
        "RGBA",
        "LA",
        "PA",
        "CMYK",
        "I;16",
        "I;16B",
        "I;16L",
        "I",
        "F",
        "YCbCr",
        "RGBX",
    ):
        raise ClientError(415, f"'{field}' has pixel mode {image.mode}, which is not supported")
    image = _upright(image)
    gray, alpha = _to_gray_and_alpha(image, invert)
    gray = _resize(gray, size)
    transparent = None if alpha is None else _resize(alpha, size) < 0.5
    return Upload(np.clip(np.rint(gray), 0, 255).astype(np.uint8), transparent)


def read_mask(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """A mask image (white = fill) -> ``(size, size)`` bool, resized to the model's size."""
    image = _upright(_decode(open_image(data, "mask", max_pixels), "mask"))
    gray, _ = _to_gray_and_alpha(image)  # transparent mask pixels count as black (keep)
    return _resize(gray, size) >= 127.5


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
