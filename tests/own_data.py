"""Real Fashion-MNIST test images written out as a user's own data: a PNG class folder, an
.npz file and a folder of IDX files, with a few classes under their real names."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import FASHION_CLASSES, load_fashion_mnist

KEPT = (1, 5, 7)  # trouser, sandal, sneaker
NAMES = tuple(sorted(FASHION_CLASSES[k] for k in KEPT))  # class folders sort by name


def real_images(count: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Fashion-MNIST test images of the kept classes, from ``offset`` on:
    uint8 ``(count, 28, 28)`` and labels ``(count,)`` indexing ``NAMES``."""
    test = load_fashion_mnist("test")
    keep = np.isin(test.labels.numpy(), KEPT).nonzero()[0][offset : offset + count]
    images = test.images[keep, 0].numpy()
    labels = np.array([NAMES.index(FASHION_CLASSES[int(y)]) for y in test.labels[keep]])
    return images, labels


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:05d}.png")
    return root


def write_split_folder(root: Path, train: int, test: int) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``."""
    write_folder(root / "train", *real_images(train))
    write_folder(root / "test", *real_images(test, offset=train))
    return root


def write_idx(folder: Path, stem: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    image_bytes = (
        (0x803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()
    )
    label_bytes = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    for kind, data in (("images-idx3", image_bytes), ("labels-idx1", label_bytes)):
        name = folder / (f"{stem}-{kind}-ubyte" + (".gz" if gz else ""))
        name.write_bytes(gzip.compress(data) if gz else data)


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()
