"""PixelCNN for Fashion-MNIST: networks, data, training, checkpoints, sampling, likelihood."""

from model.checkpoint import CheckpointError, load, save
from model.data import CLASS_NAMES, DatasetError, load_fashion_mnist
from model.generation import generate
from model.likelihood import Likelihood, log_likelihood
from model.network import PixelCNN, PixelCNNConfig

__all__ = [
    "CLASS_NAMES",
    "CheckpointError",
    "DatasetError",
    "Likelihood",
    "PixelCNN",
    "PixelCNNConfig",
    "generate",
    "load",
    "load_fashion_mnist",
    "log_likelihood",
    "save",
]
