"""Pictures in and out: any image file read as the model's grayscale or RGB, and image grids
made from model outputs.

Image files are decoded only by the decoders of the accepted formats (so Pillow never runs an
exotic decoder on a file it was handed), their pixel count is checked before any pixel is
decoded, and whatever their mode they become one image of the model's size and colours
(``model.data.image_modes``), light-on-dark like Fashion-MNIST. The service and the commands read
images the same way.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from model.data.arrays import centre_square, quantize, resize_values
from model.data.image_modes import SUPPORTED_MODES, resized, to_gray_and_alpha
from model.inference.superres import downscale

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED_TEXT = "PNG, JPEG, WebP, BMP or GIF"
DEFAULT_MAX_PIXELS = 4_000_000
MIN_SMALL_SIDE = 3  # the smallest small image /upscale takes: a 2 x 2 one says almost nothing
Problem = Literal["empty", "damaged", "too large", "unsupported", "wrong size"]


class ImageError(ValueError):
    """An image that cannot be used; ``problem`` says which kind (the service's status)."""

    def __init__(self, problem: Problem, message: str):
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class UploadedImage:
    pixels: np.ndarray  # (C, size, size) uint8 0..255: C = 1 gray, light-on-dark like Fashion-MNIST; 3 RGB
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
    """Identify and size-check an image file's bytes without decoding its pixels yet.
    ``field`` names it in errors (the form field, or the file's name)."""
    if not data:
        raise ImageError("empty", f"'{field}' is empty: send a {ACCEPTED_TEXT} image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # Pillow's own limit may be lower
        raise ImageError(
            "too large", f"'{field}' has too many pixels to decode safely: at most {limit:,}"
        ) from None
    except UnidentifiedImageError:
        if (kind := signature_format(data)) is not None:
            raise ImageError("damaged", f"'{field}' is a damaged {kind}: it could not be read") from None
        raise ImageError(
            "unsupported", f"'{field}' is not an image in an accepted format: send {ACCEPTED_TEXT}"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError("damaged", f"'{field}' could not be read as an image ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("damaged", f"'{field}' is a damaged image: it declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageError(
            "too large", f"'{field}' is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted"
        )
    return image


def _decode(image: Image.Image, field: str) -> Image.Image:
    """Decode the first frame at full size (not JPEG's DCT scaling: a 2000x2000 JPEG decoded
    at 1/8 scale, then BOX-averaged, is off by up to 8 gray levels from the full image's BOX)."""
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError("damaged", f"'{field}' is truncated or corrupt ({exc})") from None
    if image.mode not in SUPPORTED_MODES:
        raise ImageError("unsupported", f"'{field}' has pixel mode {image.mode}, which is not supported")
    return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation in place; damaged EXIF is ignored (the pixels are still fine)."""
    with contextlib.suppress(Exception):  # Pillow raises several types for malformed EXIF blocks
        ImageOps.exif_transpose(image, in_place=True)
    return image


def _load(data: bytes, field: str, max_pixels: int) -> Image.Image:
    return _upright(_decode(open_image(data, field, max_pixels), field))


def read_image(
    data: bytes, field: str, size: int, max_pixels: int, invert: bool = False, colours: int = 1
) -> UploadedImage:
    """An image file's bytes -> the model's size, grayscale (``colours`` 1) or RGB (3), alpha
    kept separately.

    Whatever its size, no float array larger than ``SHRINK_TO * size`` a side is made.
    """
    pixels, alpha = resized(_load(data, field, max_pixels), size, colours, invert)
    transparent = None if alpha is None else resize_values(alpha, size) < 0.5
    return UploadedImage(pixels, transparent)


def image_size_of(data: bytes, field: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image file in an accepted format, from its header alone."""
    width, height = open_image(data, field, max_pixels).size
    return width, height


def read_training_image(data: bytes, field: str, size: int, max_pixels: int, colours: int = 1) -> np.ndarray:
    """An image file as training data: the largest centred square, resized to ``(colours,
    size, size)`` uint8 (area-averaged when shrinking), grayscale for ``colours`` 1 and RGB
    for 3; transparency becomes black."""
    image = _load(data, field, max_pixels)
    if image.width != image.height:
        image = image.crop(centre_square(image.width, image.height))
    return resized(image, size, colours)[0]


def read_mask(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """A mask image (white = fill) -> ``(size, size)`` bool, resized to the model's size."""
    gray, _ = to_gray_and_alpha(_load(data, "mask", max_pixels), size)
    return resize_values(gray, size) >= 127.5  # transparent mask pixels count as black (keep)


def to_model_values(pixels: np.ndarray, levels: int) -> torch.Tensor:
    """uint8 ``(C, H, W)`` intensities -> model values ``(C, H, W)`` int64."""
    return quantize(torch.from_numpy(pixels.copy()).unsqueeze(0), levels)[0]


def upscale_factors(size: int) -> tuple[int, ...]:
    """The factors a ``size`` x ``size`` model can enlarge by: the divisors f >= 2 of ``size``
    that leave a small image of at least ``MIN_SMALL_SIDE`` pixels a side (2, 4, 7 for 28)."""
    return tuple(f for f in range(2, size // MIN_SMALL_SIDE + 1) if size % f == 0)


def _either(values: list[str]) -> str:
    *others, last = values
    return f"{', '.join(others)} or {last}" if others else last


def read_small_image(
    data: bytes,
    field: str,
    size: int,
    levels: int,
    factor: int | None,
    max_pixels: int,
    invert: bool = False,
    colours: int = 1,
) -> tuple[torch.Tensor, int]:
    """An image file as the small image that ``upscale`` enlarges: model values
    ``(colours, size/f, size/f)`` (1: gray, 3: RGB), and its factor f.

    An image of exactly a small size is used as it is (its size gives f when ``factor`` is
    None); with ``factor``, a larger one is resized to ``size`` x ``size`` and shrunk by
    ``downscale``.
    """
    sides = {size // f: f for f in upscale_factors(size)}
    if not sides:
        raise ImageError(
            "wrong size",
            f"{size}x{size} images cannot be upscaled: no factor of {size} leaves a small image of "
            f"at least {MIN_SMALL_SIDE}x{MIN_SMALL_SIDE}",
        )
    if factor is not None and factor not in sides.values():
        raise ImageError(
            "wrong size", f"factor must be {_either([str(f) for f in sides.values()])}, got {factor}"
        )
    width, height = open_image(data, field, max_pixels).size
    if factor is None:
        if width != height or width not in sides:
            accepted = ", ".join(f"{s}x{s} (factor {f})" for s, f in sides.items())
            raise ImageError(
                "wrong size",
                f"a {width}x{height} image matches no factor: send {accepted}, or give 'factor' "
                "to shrink a larger image",
            )
        factor = sides[width]
    side = size // factor
    if (width, height) == (side, side):
        return to_model_values(
            read_image(data, field, side, max_pixels, invert, colours).pixels, levels
        ), factor
    if width < side or height < side:
        raise ImageError(
            "wrong size",
            f"a {width}x{height} image is smaller than the {side}x{side} that factor {factor} needs",
        )
    full = to_model_values(read_image(data, field, size, max_pixels, invert, colours).pixels, levels)
    return downscale(full, factor), factor


def image_grid(images: torch.Tensor, columns: int, scale: int = 1, padding: int = 2) -> Image.Image:
    """uint8 ``(N, C, H, W)`` 0..255 -> one PIL image, grayscale for C = 1 and RGB for C = 3,
    ``columns`` images a row.

    Cells are separated by ``padding`` pixels of mid grey; ``scale`` is nearest-neighbour.
    """
    n, c, h, w = images.shape
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    canvas = np.full(
        (rows * (h + padding) + padding, columns * (w + padding) + padding, c), 128, dtype=np.uint8
    )
    pixels = images.to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    for k in range(n):
        r, col = divmod(k, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[top : top + h, left : left + w] = pixels[k]
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode="L" if c == 1 else "RGB")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture
