"""Data: image arrays and their splits, Fashion-MNIST (the default data set) and IDX files.

Images are uint8 tensors ``(N, C, H, W)`` (C = 1: grayscale) in 0..255, labels int64 ``(N,)``.
- ``arrays``: ``Split``, ``DatasetError``, ``quantize``/``dequantize``, square resizing, the
  fixed validation hold-out, and ``class_index`` (a label given by index or by name);
- ``fashion``: Fashion-MNIST from Debian's package, ``load_fashion_mnist``, its class names;
- ``idx``, ``npz``, ``folder``: the other sources' readers;
- ``sources``: ``open_source`` (any source as one checked ``Dataset``) and the run cache. It
  reads image files through ``model.pictures``, so import it by name: ``model.data.sources``.
"""

from model.data.arrays import (
    DatasetError,
    Split,
    class_index,
    default_class_names,
    dequantize,
    quantize,
    resize_images,
)
from model.data.fashion import DEFAULT_DATA_DIR, FASHION_CLASSES, FILES, load_fashion_mnist

__all__ = [
    "DEFAULT_DATA_DIR",
    "FASHION_CLASSES",
    "FILES",
    "DatasetError",
    "Split",
    "class_index",
    "default_class_names",
    "dequantize",
    "load_fashion_mnist",
    "quantize",
    "resize_images",
]
