"""A NumPy ``.npz`` file as a data set (also the run directory's cache of any data set).

Arrays: ``images`` ``(N, H, W)`` uint8 (grayscale) or ``(N, H, W, 3)`` (RGB); optional
``labels`` ``(N,)`` integers in ``[0, len(class_names))`` and ``class_names`` ``(K,)``
strings; optional ``test_images`` and ``test_labels`` for a test split. Read with
``allow_pickle=False``: nothing is unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from model.data.arrays import COLOUR_NAMES, DatasetError, Split, channels_last

KEYS = ("images", "labels", "class_names", "test_images", "test_labels", "name", "skipped")


def _images(data: dict[str, np.ndarray], key: str, where: str) -> torch.Tensor:
    images = data[key]
    if images.dtype != np.uint8:
        raise DatasetError(f"{where}: '{key}' has dtype {images.dtype}; uint8 (0..255) is accepted")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3) or 0 in images.shape:
        raise DatasetError(
            f"{where}: '{key}' has shape {images.shape}; (N, H, W) grayscale or (N, H, W, 3) RGB "
            "images are accepted"
        )
    if images.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 3, H, W)


def _labels(data: dict[str, np.ndarray], key: str, count: int, where: str) -> torch.Tensor:
    labels = data[key]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{where}: '{key}' has shape {labels.shape} and dtype {labels.dtype}; (N,) integers are accepted"
        )
    if len(labels) != count:
        images_key = key.replace("labels", "images")
        raise DatasetError(
            f"{where}: '{key}' has {len(labels)} entries but '{images_key}' has {count} images"
        )
    return torch.from_numpy(labels.astype(np.int64))


def read_npz(path: Path) -> tuple[Split, Split | None, tuple[str, ...] | None, dict[str, str]]:
    """(training pool, test split or None, class names or None, text fields) of an .npz file.

    Labels are checked against the names by the caller (``model.data.sources``); here only
    shapes, types and lengths.
    """
    where = path.name
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files if key in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if "pickle" in str(exc):
            raise DatasetError(
                f"{where}: holds object arrays, which are not read (nothing is unpickled); "
                "save class_names as strings, e.g. np.array(['cat', 'dog'])"
            ) from None
        raise DatasetError(f"{where}: not a readable .npz file ({exc})") from None
    if "images" not in data:
        raise DatasetError(
            f"{where}: no 'images' array; an .npz data set holds images (N, H, W) or (N, H, W, 3) uint8"
        )
    pool_images = _images(data, "images", where)
    unlabelled = torch.zeros(len(pool_images), dtype=torch.int64)
    pool_labels = _labels(data, "labels", len(pool_images), where) if "labels" in data else unlabelled
    test = None
    if "test_images" in data:
        test_images = _images(data, "test_images", where)
        if test_images.shape[1:] != pool_images.shape[1:]:
            raise DatasetError(
                f"{where}: 'test_images' are {_shape(test_images)} but 'images' are "
                f"{_shape(pool_images)}; both splits must share one size and colour"
            )
        if ("labels" in data) != ("test_labels" in data):
            raise DatasetError(f"{where}: give 'labels' and 'test_labels' together, or neither")
        test_labels = (
            _labels(data, "test_labels", len(test_images), where)
            if "test_labels" in data
            else torch.zeros(len(test_images), dtype=torch.int64)
        )
        test = Split(test_images, test_labels)
    elif "test_labels" in data:
        raise DatasetError(f"{where}: 'test_labels' without 'test_images'")
    names = None
    if "class_names" in data:
        raw = data["class_names"]
        if raw.ndim != 1 or raw.dtype.kind not in "US":
            raise DatasetError(
                f"{where}: 'class_names' must be a 1-D array of strings, got {raw.dtype} {raw.shape}"
            )
        if "labels" not in data:
            raise DatasetError(f"{where}: 'class_names' without 'labels'; give each image its label")
        names = tuple(str(n.decode() if isinstance(n, bytes) else n) for n in raw.tolist())
    elif "labels" in data:
        names = tuple(str(k) for k in range(int(pool_labels.max()) + 1 if len(pool_labels) else 0))
    texts = {key: str(data[key]) for key in ("name",) if key in data and data[key].ndim == 0}
    if "skipped" in data and data["skipped"].dtype.kind in "US":
        texts["skipped"] = "\n".join(str(s) for s in data["skipped"].tolist())
    return Split(pool_images, pool_labels), test, names, texts


def _shape(images: torch.Tensor) -> str:
    """``(N, C, H, W)`` -> "HxW grayscale" or "HxW RGB"."""
    return f"{images.shape[2]}x{images.shape[3]} {COLOUR_NAMES[int(images.shape[1])]}"


def write_npz(
    path: Path, pool: Split, test: Split | None, names: tuple[str, ...] | None, name: str, skipped: list[str]
) -> None:
    """Write a data set in the layout ``read_npz`` reads (images ``(N, H, W)`` or ``(N, H, W, 3)``)."""
    arrays: dict[str, np.ndarray] = {"images": channels_last(pool.images), "name": np.array(name)}
    if names is not None:
        arrays["labels"] = pool.labels.numpy()
        arrays["class_names"] = np.array(names, dtype=str)
    if test is not None:
        arrays["test_images"] = channels_last(test.images)
        if names is not None:
            arrays["test_labels"] = test.labels.numpy()
    arrays["skipped"] = np.array(skipped, dtype=str)
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
