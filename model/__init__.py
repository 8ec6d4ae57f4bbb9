"""PixelCNN for Fashion-MNIST: the public API.

Weights files (safetensors; nothing is unpickled):
    ``load(path) -> PixelCNN``, ``save(model, path, **facts)``; ``CheckpointError`` when a
    file is missing, damaged or not ours.
Networks:
    ``PixelCNN(PixelCNNConfig(...))``: classic masked, gated, or gated with attention
    (``ARCHITECTURES``); ``model(x, labels)`` gives logits ``(B, levels, H, W)``.
Using a model (images are integer model values ``(N, 1, H, W)`` in ``[0, levels)``):
    ``generate(model, n, labels=, seeds=, temperature=)`` -> ``(n, 1, H, W)`` uint8;
    ``complete(model, image, mask, n, labels=, seeds=, particles=)`` -> images, bits, labels;
    ``upscale(model, low, factor, n, labels=, seeds=, particles=)`` -> images, bits, labels:
    super-resolution, every image agreeing exactly with ``low`` under ``downscale(image, factor)``;
    ``log_likelihood(model, images, labels=None)`` -> ``Likelihood`` (per-pixel log2 p,
    total bits, bits/dim, class posterior);
    ``compress(model, images)`` -> bytes and ``decompress(model, data)`` -> images, lossless;
    ``CodecError`` for bad input or damaged data.
Data:
    ``load_fashion_mnist("train" | "validation" | "test")`` -> ``Split(images, labels)``,
    ``CLASS_NAMES``; ``DatasetError`` when the files are missing or damaged.

Subpackages by concern: ``model.network`` (what the network computes), ``model.inference``
(how it is sampled and scored), ``model.codec`` (compression), ``model.training`` (how it is
trained and exported). Commands: ``python -m model.train``, ``model.evaluate``,
``model.sample``, ``model.export``, ``model.codec``.
"""

from model.checkpoint import CheckpointError, load, save
from model.codec import CodecError, compress, decompress
from model.data import CLASS_NAMES, DatasetError, Split, load_fashion_mnist
from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import Likelihood, log_likelihood
from model.inference.superres import downscale, upscale
from model.network.pixelcnn import ARCHITECTURES, PixelCNN, PixelCNNConfig

__all__ = [
    "ARCHITECTURES",
    "CLASS_NAMES",
    "CheckpointError",
    "CodecError",
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
    "save",
    "upscale",
]
