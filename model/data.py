"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, parsed from IDX with numpy.

Images come back as uint8 tensors ``(N, 1, H, W)`` in 0..255 and labels as int64 ``(N,)``.
Nothing is ever downloaded: the files are read from ``DEFAULT_DATA_DIR``, or from the
directory in ``$PIXELCNN_DATA_DIR``, or from an explicit ``data_dir`` argument.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "PIXELCNN_DATA_DIR"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASS_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
# Other names users give the classes (after lower-casing and "_" -> "-").
CLASS_ALIASES = {
    "tshirt": "t-shirt",
    "t-shirt/top": "t-shirt",
    "top": "t-shirt",
    "ankle boot": "ankle-boot",
    "ankleboot": "ankle-boot",
    "boot": "ankle-boot",
    "trousers": "trouser",
    "sneakers": "sneaker",
}
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
VALIDATION_SIZE = 5000
VALIDATION_SEED = 1234


def class_index(text: str) -> int | None:
    """An index written in ASCII digits (not range-checked: the caller knows the model), or a
    class name (case, spacing and "_" forgiven, or an alias) -> an index; None otherwise."""
    text = text.strip().lower().replace("_", "-")
    if re.fullmatch(r"-?[0-9]{1,6}", text):
        return int(text)
    text = CLASS_ALIASES.get(text, CLASS_ALIASES.get(text.replace("-", " "), text))
    return CLASS_NAMES.index(text) if text in CLASS_NAMES else None


class DatasetError(RuntimeError):
    """A data file is missing or not a valid Fashion-MNIST IDX file."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def _problem(path: Path, why: str) -> DatasetError:
    return DatasetError(
        f"{path}: {why}. Fashion-MNIST is read from {DEFAULT_DATA_DIR} (install it with "
        f"'apt-get install -y {DEBIAN_PACKAGE}'), or from the directory named by "
        f"${DATA_DIR_ENV} or --data-dir, holding the four original IDX .gz files."
    )


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes, checking its magic number and size."""
    if not path.is_file():
        raise _problem(path, "file not found")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _problem(path, f"not a readable gzip file ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _problem(path, f"too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _problem(path, f"bad IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise _problem(
            path, f"IDX header says shape {shape} ({expected} bytes) but holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 1, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_fashion_mnist(part: str, data_dir: str | Path | None = None, image_size: int = 28) -> Split:
    """Load ``part`` ("train", "validation", "train+validation" or "test").

    "train" and "validation" are a fixed, seeded split of the 60,000 training images
    (``VALIDATION_SIZE`` held out for model selection); "test" is the 10,000 test images.
    Images are resized (bilinear) when ``image_size`` is not 28.
    """
    source = "test" if part == "test" else "train"
    if part not in ("train", "validation", "train+validation", "test"):
        raise ValueError(f"unknown part {part!r}")
    directory = resolve_data_dir(data_dir)
    image_file, label_file = FILES[source]
    images = read_idx(directory / image_file, IMAGES_MAGIC, 3)
    labels = read_idx(directory / label_file, LABELS_MAGIC, 1)
    if images.shape[0] != labels.shape[0]:
        raise _problem(directory / label_file, f"{labels.shape[0]} labels for {images.shape[0]} images")
    if int(labels.max()) >= len(CLASS_NAMES):
        raise _problem(directory / label_file, f"label {int(labels.max())} out of range 0..9")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    if part in ("train", "validation"):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(VALIDATION_SEED))
        chosen = order[VALIDATION_SIZE:] if part == "train" else order[:VALIDATION_SIZE]
        chosen = chosen.sort().values
        x, y = x[chosen], y[chosen]
    if image_size != x.shape[-1]:
        x = resize_images(x, image_size)
    return Split(x, y)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of uint8 ``(N, 1, H, W)`` to ``(N, 1, size, size)`` uint8."""
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8)


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Map uint8 intensities 0..255 to ``levels`` bins: ``(N, 1, H, W)`` int64 in [0, levels)."""
    if levels == 256:
        return images.long()
    return (images.long() * levels) // 256


def dequantize(values: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of :func:`quantize` for display: bin centres back to uint8 0..255."""
    if levels == 256:
        return values.to(torch.uint8)
    return ((values.long() * 256 + 128) // levels).clamp(0, 255).to(torch.uint8)
