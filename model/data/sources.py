"""Any data source as one ``Dataset``: Fashion-MNIST (the default), a folder of images, an
``.npz`` file or a folder of IDX files, at one square size, checked before training starts.

``open_source(source, image_size)`` reads and checks a source; every problem is a
``DatasetError`` whose message is one line naming the file or field and what is accepted.
``Dataset.save`` / ``load_cache`` keep the decoded arrays in a run directory, so that a
resumed run, ``model.export`` and ``model.evaluate`` never decode a folder again.
(This module reads image files through ``model.pictures``, which imports ``model.data``: it
is imported by name, not re-exported by ``model.data``.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch

from model.data.arrays import (
    COLOUR_NAMES,
    DEFAULT_VALIDATION_FRACTION,
    DatasetError,
    Split,
    check_image_size,
    default_class_names,
    hold_out,
    resize_images,
    validation_count,
)
from model.data.fashion import FASHION_CLASSES, read_fashion_mnist
from model.data.fashion import NAME as FASHION_NAME
from model.data.folder import decode_folder, scan_folder
from model.data.idx import looks_like_idx_folder, read_idx_folder
from model.data.npz import read_npz, write_npz

CACHE_FILE = "data.npz"
ACCEPTED = (
    "--data takes a folder of images (one subfolder per class, or none), an .npz file "
    "(images (N, H, W) or (N, H, W, 3) uint8) or a folder of MNIST-format IDX files"
)


@dataclass(frozen=True)
class Dataset:
    """A data set at one size: the training pool (validation is held out of it), the test
    split if the source has one, and the class names (None: no classes)."""

    name: str  # a short name for the model card (a folder's or file's name, never a path)
    pool: Split  # (N, C, S, S) uint8 images (C = 1 grayscale, 3 RGB) and (N,) labels
    test: Split | None
    class_names: tuple[str, ...] | None
    skipped: tuple[str, ...] = ()  # "file: reason" of the files --skip-bad-files left out

    @property
    def image_size(self) -> int:
        return int(self.pool.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.pool.images.shape[1])

    def part(self, part: str, validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> Split:
        """ "train", "validation", "train+validation" or "test" (``DatasetError`` if none)."""
        if part == "test":
            if self.test is None:
                raise DatasetError(
                    f"{self.name}: has no test split (a folder with train/ and test/, t10k-* IDX "
                    "files, or test_images in an .npz); use the validation split instead"
                )
            return self.test
        return hold_out(self.pool, part, validation_fraction)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over every image and label (both splits) and the class names (computed once:
        a run records it with every best epoch)."""
        digest = hashlib.sha256(json.dumps(self.class_names).encode())
        for split in (self.pool, self.test):
            if split is not None:
                digest.update(f"{tuple(split.images.shape)}|".encode())
                digest.update(split.images.contiguous().numpy().tobytes())
                digest.update(split.labels.numpy().astype("<i8").tobytes())
        return digest.hexdigest()

    def describe(self, validation_fraction: float) -> str:
        """One line for the weights' facts: what the model was trained on."""
        held = validation_count(len(self.pool), validation_fraction)
        classes = f"{len(self.class_names)} classes" if self.class_names else "no classes"
        test = f"; a test split of {len(self.test):,}" if self.test is not None else "; no test split"
        return (
            f"{self.name}: {self.image_size}x{self.image_size} {COLOUR_NAMES[self.channels]}, {classes}; "
            f"{len(self.pool) - held:,} training images, {held:,} held out for validation{test}"
        )

    def save(self, run_dir: Path) -> None:
        write_npz(run_dir / CACHE_FILE, self.pool, self.test, self.class_names, self.name, list(self.skipped))


def load_cache(run_dir: Path) -> Dataset | None:
    """The data set a run cached in its directory, or None when it has none."""
    path = run_dir / CACHE_FILE
    if not path.is_file():
        return None
    pool, test, names, texts = read_npz(path)
    skipped = tuple(line for line in texts.get("skipped", "").splitlines() if line)
    return Dataset(texts.get("name", run_dir.name), pool, test, names, skipped)


def _choose_size(sizes: set[tuple[int, int]], requested: int | None, where: str) -> int:
    if requested is not None:
        check_image_size(requested, where)
        return requested
    if len(sizes) == 1:
        ((width, height),) = sizes
        if width == height:
            check_image_size(width, where)
            return width
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4]) + (", ..." if len(sizes) > 4 else "")
    raise DatasetError(
        f"{where}: images are {shown}, not one square size: pass --image-size N (8 to 64) to "
        "centre-crop and resize every image to N x N"
    )


def _check_labels(dataset: Dataset) -> Dataset:
    """Labels within the names, every class with a training image, at least two images."""
    where, names = dataset.name, dataset.class_names
    if len(dataset.pool) < 2:
        raise DatasetError(
            f"{where}: {len(dataset.pool)} training image(s); at least 2 are needed "
            "(one is held out for validation)"
        )
    if dataset.test is not None and not len(dataset.test):
        raise DatasetError(f"{where}: the test split holds no images; add some, or leave the split out")
    if names is not None:
        if not names:
            raise DatasetError(f"{where}: 'class_names' is empty")
        if len(set(names)) != len(names) or any(not n.strip() or len(n) > 64 for n in names):
            raise DatasetError(f"{where}: class names must be distinct, non-blank and at most 64 characters")
        for split_name, split in (("labels", dataset.pool), ("test_labels", dataset.test)):
            if split is None or not len(split):
                continue
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= len(names):
                bad = low if low < 0 else high
                raise DatasetError(
                    f"{where}: {split_name} holds {bad}, outside 0..{len(names) - 1} "
                    f"(one label per class name: {len(names)} classes)"
                )
        counts = torch.bincount(dataset.pool.labels, minlength=len(names))
        empty = [names[k] for k in range(len(names)) if counts[k] == 0]
        if empty:
            raise DatasetError(
                f"{where}: class {empty[0]!r} has no training images ({len(empty)} such classes)"
            )
    return dataset


def _check_colours(name: str, pool: Split, colours: int) -> None:
    """Arrays read as they are stored: their colour must be the one asked for."""
    stored = int(pool.images.shape[1])
    if stored != colours:
        hint = "train with --image-channels 3" if stored == 3 else "--image-channels 3 needs RGB images"
        raise DatasetError(
            f"{name}: holds {COLOUR_NAMES[stored]} images, not {COLOUR_NAMES[colours]}; {hint} "
            "(a folder of images is read in either)"
        )


def _from_arrays(
    name: str,
    pool: Split,
    test: Split | None,
    names: tuple[str, ...] | None,
    size: int | None,
    colours: int,
) -> Dataset:
    _check_colours(name, pool, colours)
    chosen = _choose_size({(int(pool.images.shape[-1]), int(pool.images.shape[-2]))}, size, name)
    pool = Split(resize_images(pool.images, chosen), pool.labels)
    if test is not None:
        test = Split(resize_images(test.images, chosen), test.labels)
    return _check_labels(Dataset(name, pool, test, names))


def open_source(
    source: str | Path | None,
    image_size: int | None = None,
    *,
    data_dir: str | Path | None = None,
    skip_bad_files: bool = False,
    progress: bool = False,
    colours: int = 1,
) -> Dataset:
    """Read and check a data source: None is Fashion-MNIST (from ``data_dir`` or Debian's
    package); a path is an ``.npz`` file, a folder of IDX files or a folder of images.
    ``colours``: 1 reads grayscale, 3 RGB (a folder is read in either; arrays must be stored so)."""
    if colours not in COLOUR_NAMES:
        raise DatasetError(f"image channels must be 1 (grayscale) or 3 (RGB), got {colours}")
    if source is None:
        train, test = read_fashion_mnist("train", data_dir), read_fashion_mnist("test", data_dir)
        return _from_arrays(FASHION_NAME, train, test, FASHION_CLASSES, image_size, colours)
    path = Path(source)
    name = path.name or str(path)
    if not path.exists():
        raise DatasetError(f"{source}: not found; {ACCEPTED}")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"{source}: a file, but not an .npz file; {ACCEPTED}")
        arrays, test_arrays, array_names, _ = read_npz(path)
        return _from_arrays(path.stem, arrays, test_arrays, array_names, image_size, colours)
    if looks_like_idx_folder(path):
        arrays, test_arrays, array_names = read_idx_folder(path)
        if array_names is None:
            array_names = default_class_names(int(arrays.labels.max()) + 1 if len(arrays) else 0)
        return _from_arrays(name, arrays, test_arrays, array_names, image_size, colours)
    train_scan, test_scan, names = scan_folder(path, skip_bad_files, read_sizes=image_size is None)
    if not train_scan.files:
        raise DatasetError(
            f"{source}: no images found; put images (PNG, JPEG, WebP, BMP or GIF) in it, or in one "
            "subfolder per class"
        )
    sizes = train_scan.sizes | (test_scan.sizes if test_scan else set())
    size = _choose_size(sizes, image_size, name)  # the headers' sizes matter only without image_size
    pool = decode_folder(train_scan, path, size, colours, skip_bad_files, progress)
    test_split = (
        decode_folder(test_scan, path, size, colours, skip_bad_files, progress) if test_scan else None
    )
    skipped = tuple(train_scan.skipped + (test_scan.skipped if test_scan else []))
    return _check_labels(Dataset(name, pool, test_split, names, skipped))


def with_size(dataset: Dataset, size: int) -> Dataset:
    """The same data set resized to ``size`` (for a model of another size than the cache's)."""
    if size == dataset.image_size:
        return dataset
    test = (
        None if dataset.test is None else Split(resize_images(dataset.test.images, size), dataset.test.labels)
    )
    return replace(
        dataset, pool=Split(resize_images(dataset.pool.images, size), dataset.pool.labels), test=test
    )
