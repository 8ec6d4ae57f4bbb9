"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package: the default data set.

Nothing is ever downloaded: the four IDX ``.gz`` files are read from ``DEFAULT_DATA_DIR``, or
from the directory in ``$PIXELCNN_DATA_DIR``, or from an explicit ``data_dir`` argument. Its
class names live here and nowhere else: a model trained on it carries them in its config.
"""

from __future__ import annotations

import os
from pathlib import Path

from model.data.arrays import DatasetError, Split, hold_out, resize_images
from model.data.idx import read_pair

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "PIXELCNN_DATA_DIR"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
NAME = "Fashion-MNIST"
FASHION_CLASSES = (
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
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


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


def read_fashion_mnist(source: str, data_dir: str | Path | None = None) -> Split:
    """All of one file pair: ``source`` "train" (60,000 images) or "test" (10,000)."""
    directory = resolve_data_dir(data_dir)
    image_file, label_file = FILES[source]
    split = read_pair(directory / image_file, directory / label_file, _problem)
    if len(split) and int(split.labels.max()) >= len(FASHION_CLASSES):
        raise _problem(directory / label_file, f"label {int(split.labels.max())} out of range 0..9")
    return split


def load_fashion_mnist(part: str, data_dir: str | Path | None = None, image_size: int = 28) -> Split:
    """Load ``part`` ("train", "validation", "train+validation" or "test").

    "train" and "validation" are a fixed, seeded split of the 60,000 training images
    (5,000 held out for model selection); "test" is the 10,000 test images. Images are
    centre-cropped and resized (area averaging when shrinking) when ``image_size`` is not 28.
    """
    if part not in ("train", "validation", "train+validation", "test"):
        raise ValueError(f"unknown part {part!r}")
    split = read_fashion_mnist("test" if part == "test" else "train", data_dir)
    if part != "test":
        split = hold_out(split, part)
    return Split(resize_images(split.images, image_size), split.labels)
