"""PixelCNN for Fashion-MNIST or your own images: the public API.

Weights files (safetensors; nothing is unpickled):
    ``load(path) -> PixelCNN``, ``save(model, path, **facts)``; ``CheckpointError`` when a
    file is missing, damaged or not ours.
Networks:
    ``PixelCNN(PixelCNNConfig(...))``: classic masked, gated, or gated with attention
    (``ARCHITECTURES``); ``model(x, labels)`` gives logits ``(B, levels, H, W)``, or
    ``(B, levels, 3, H, W)`` for a colour model (``image_channels=3``).
Using a model (images are integer model values ``(N, C, H, W)`` in ``[0, levels)``, C = 1
for grayscale, 3 for RGB):
    ``generate(model, n, labels=, seeds=, temperature=)`` -> ``(n, C, H, W)`` uint8;
    ``complete(model, image, mask, n, labels=, seeds=, particles=)`` -> images, bits, labels;
    ``upscale(model, low, factor, n, labels=, seeds=, particles=)`` -> images, bits, labels:
    super-resolution, every image agreeing exactly with ``low`` under ``downscale(image, factor)``;
    ``log_likelihood(model, images, labels=None)`` -> ``Likelihood`` (per-pixel log2 p,
    total bits, bits/dim, class posterior);
    ``compress(model, images)`` -> bytes and ``decompress(model, data)`` -> images, lossless;
    ``CodecError`` for bad input or damaged data.
Data:
    ``open_source(folder | npz | idx folder | None)`` -> ``Dataset`` (any data set at one
    size; None is Fashion-MNIST), ``dataset.part("train" | "validation" | "test")`` ->
    ``Split(images, labels)``; ``load_fashion_mnist(part)`` and ``FASHION_CLASSES``;
    ``DatasetError`` when a source is missing, damaged or unusable. A model's class names are
    ``model.config.label_names``.

Subpackages by concern: ``model.network`` (what the network computes), ``model.inference``
(how it is sampled and scored), ``model.codec`` (compression), ``model.training`` (how it is
trained and exported). Commands: ``python -m model.train``, ``model.evaluate``,
``model.sample``, ``model.export``, ``model.codec``.
"""

from model.checkpoint import CheckpointError, load, save
from model.codec import CodecError, compress, decompress
from model.data import FASHION_CLASSES, DatasetError, Split, load_fashion_mnist
from model.data.sources import Dataset, open_source
from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import Likelihood, log_likelihood
from model.inference.superres import downscale, upscale
from model.network.pixelcnn import ARCHITECTURES, PixelCNN, PixelCNNConfig

__all__ = [
    "ARCHITECTURES",
    "FASHION_CLASSES",
    "CheckpointError",
    "CodecError",
    "Dataset",
    "DatasetError",
    "Likelihood",
    "PixelCNN",
    "PixelCNNConfig",
    "Split",
    "complete",
    "compress",
    "decompress",
    "downscale",
    "generate",
    "load",
    "load_fashion_mnist",
    "log_likelihood",
    "open_source",
    "save",
    "upscale",
]
