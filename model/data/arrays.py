"""Image arrays as the model sees them: splits, quantization, square resizing, label names.

Images are uint8 tensors ``(N, C, H, W)`` in 0..255 (C = 1: grayscale) and labels int64
``(N,)``. Nothing here knows any particular data set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 64
COLOUR_NAMES = {1: "grayscale", 3: "RGB"}  # image channels -> what they are called


class DatasetError(RuntimeError):
    """A data source is missing, unreadable or not usable for training; the message is one line
    that names the file or field and says what is accepted."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64 (zeros for a data set without classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def first(self, count: int | None) -> Split:
        """The first ``count`` images (all of them for None)."""
        return self if count is None else Split(self.images[:count], self.labels[:count])


def channels_last(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` -> the layout files and Pillow use: ``(N, H, W)`` for grayscale,
    ``(N, H, W, 3)`` for RGB (whose bytes are the pixels' colours interleaved)."""
    return images[:, 0].numpy() if images.shape[1] == 1 else images.permute(0, 2, 3, 1).contiguous().numpy()


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Map uint8 intensities 0..255 to ``levels`` bins: ``(N, C, H, W)`` int64 in [0, levels)."""
    if levels == 256:
        return images.long()
    return (images.long() * levels) // 256


def dequantize(values: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of :func:`quantize` for display: bin centres back to uint8 0..255."""
    if levels == 256:
        return values.to(torch.uint8)
    return ((values.long() * 256 + 128) // levels).clamp(0, 255).to(torch.uint8)


def resize_values(values: np.ndarray, size: int) -> np.ndarray:
    """float ``(h, w)`` -> float64 ``(size, size)``: BOX (area averaging) when shrinking both
    sides, else bilinear. The one resampling rule of uploads and training data alike."""
    if values.shape == (size, size):
        return values.astype(np.float64)
    picture = Image.fromarray(values.astype(np.float32))
    shrinking = min(values.shape) >= size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(picture.resize((size, size), resample), dtype=np.float64)


def resize_to_uint8(values: np.ndarray, size: int) -> np.ndarray:
    """float ``(h, w)`` 0..255 -> uint8 ``(size, size)``: :func:`resize_values`, rounded."""
    return np.clip(np.rint(resize_values(values, size)), 0, 255).astype(np.uint8)


def centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the largest centred square of a picture."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def fit_square(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(N, H, W)`` -> uint8 ``(N, size, size)``: centre-cropped to a square, then
    resized by :func:`resize_values` (nothing is done to images already that size)."""
    n, height, width = images.shape
    if (height, width) == (size, size):
        return images
    left, top, right, bottom = centre_square(width, height)
    square = images[:, top:bottom, left:right].astype(np.float32)
    out = np.empty((n, size, size), dtype=np.uint8)
    for k in range(n):
        out[k] = resize_to_uint8(square[k], size)
    return out


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, size, size)`` by :func:`fit_square`, each
    channel alike."""
    n, c, height, width = images.shape
    if (height, width) == (size, size):
        return images
    flat = fit_square(images.reshape(n * c, height, width).numpy(), size)
    return torch.from_numpy(flat).reshape(n, c, size, size)


def check_image_size(size: int, where: str) -> None:
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DatasetError(
            f"{where}: image size {size} is not accepted: use {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
            "(--image-size N resizes every image to N x N)"
        )


def _key(text: str) -> str:
    """A class name as compared: lower case, letters and digits only."""
    return re.sub(r"[\W_]+", "", text.lower())


def class_index(text: str, names: tuple[str, ...] | list[str]) -> int | None:
    """An index written in ASCII digits (not range-checked: the caller knows the model), or one
    of ``names`` -> an index; None otherwise.

    Case, spacing and punctuation are forgiven ("Ankle_Boot" is "ankle-boot"), so is a plural
    "s", and a word that belongs to exactly one name stands for it ("boot"); a text with "/"
    ("t-shirt/top") matches by any of its parts.
    """
    text = text.strip()
    if re.fullmatch(r"-?[0-9]{1,6}", text):
        return int(text)
    keys = [_key(name) for name in names]
    words = [{_key(word) for word in re.split(r"[\W_]+", name) if word} for name in names]
    for part in (text, *text.split("/")):
        wanted = _key(part)
        for candidate in (wanted, wanted.removesuffix("s")) if wanted else ():
            if candidate in keys:
                return keys.index(candidate)
            owners = [index for index, owned in enumerate(words) if candidate in owned]
            if len(owners) == 1:
                return owners[0]
    return None


def default_class_names(count: int) -> tuple[str, ...]:
    """What the labels of a data set without names are called: "0", "1", ..."""
    return tuple(str(k) for k in range(count))


VALIDATION_SEED = 1234
DEFAULT_VALIDATION_FRACTION = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
PARTS = ("train", "validation", "train+validation")


def validation_count(total: int, fraction: float) -> int:
    """How many of ``total`` training images are held out: at least 1, at most ``total - 1``."""
    return min(total - 1, max(1, round(total * fraction)))


def hold_out(pool: Split, part: str, fraction: float = DEFAULT_VALIDATION_FRACTION) -> Split:
    """``part`` of a training pool: a fixed, seeded validation split of ``fraction`` of it
    ("validation"), the rest ("train"), or all of it ("train+validation"), in file order."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}: use one of {PARTS}")
    if part == "train+validation":
        return pool
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    held = validation_count(len(pool), fraction)
    chosen = (order[held:] if part == "train" else order[:held]).sort().values
    return Split(pool.images[chosen], pool.labels[chosen])
