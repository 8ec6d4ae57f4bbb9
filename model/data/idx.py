"""MNIST-format IDX files (MNIST, KMNIST, EMNIST, Fashion-MNIST): a folder of them as a data set.

A folder holds ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (each optionally
``.gz``, optionally with a prefix such as ``emnist-letters-``), and for a test split the same
two with ``t10k`` (or ``test``) for ``train``. A ``classes.txt`` beside them, one name a line,
names the labels; without it they are called "0", "1", ...
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model.data.arrays import DatasetError, Split

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
Problem = Callable[[Path, str], DatasetError]


def _plain_problem(path: Path, why: str) -> DatasetError:
    return DatasetError(f"{path}: {why}")


def read_idx(path: Path, magic: int, ndim: int, problem: Problem = _plain_problem) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped when its name ends in ``.gz``), checking its
    magic number and size. ``problem`` turns a path and a reason into the error raised."""
    if not path.is_file():
        raise problem(path, "file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise problem(path, f"not a readable gzip file ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise problem(path, f"too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise problem(path, f"bad IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise problem(path, f"IDX header says shape {shape} ({expected} bytes) but holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_pair(images_file: Path, labels_file: Path, problem: Problem = _plain_problem) -> Split:
    """An images file and its labels file -> ``Split`` with images ``(N, 1, H, W)``."""
    images = read_idx(images_file, IMAGES_MAGIC, 3, problem)
    labels = read_idx(labels_file, LABELS_MAGIC, 1, problem)
    if images.shape[0] != labels.shape[0]:
        raise problem(labels_file, f"{labels.shape[0]} labels for {images.shape[0]} images")
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def find_idx(folder: Path, part: str, kind: str) -> Path | None:
    """The one file of ``folder`` for ``part`` ("train" or "t10k") and ``kind`` ("images" or
    "labels"); None when there is none. Two candidates are an error."""
    ndim = 3 if kind == "images" else 1
    names = [f"{p}-{kind}-idx{ndim}-ubyte" for p in (("t10k", "test") if part == "t10k" else ("train",))]
    found = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and any(path.name.removesuffix(".gz").endswith(name) for name in names)
    )
    if len(found) > 1:
        listed = ", ".join(path.name for path in found)
        raise DatasetError(f"{folder}: {len(found)} {part} {kind} files ({listed}); keep one")
    return found[0] if found else None


def looks_like_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and find_idx(folder, "train", "images") is not None


def read_idx_folder(folder: Path) -> tuple[Split, Split | None, tuple[str, ...] | None]:
    """(training pool, test split or None, class names or None) of a folder of IDX files."""
    split: dict[str, Split | None] = {}
    for part in ("train", "t10k"):
        images, labels = find_idx(folder, part, "images"), find_idx(folder, part, "labels")
        if images is None and labels is None:
            split[part] = None
            continue
        if images is None or labels is None:
            have, lack = ("images", "labels") if labels is None else ("labels", "images")
            raise DatasetError(f"{folder}: a {part} {have} file without its {lack} file ({part}-{lack}-idx…)")
        split[part] = read_pair(images, labels)
    names_file = folder / "classes.txt"
    names = None
    if names_file.is_file():
        names = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
    train = split["train"]
    assert train is not None  # looks_like_idx_folder was checked by the caller
    return train, split["t10k"], names
