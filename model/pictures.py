"""Pictures made from model outputs: image grids and training curves, as PIL images or PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def image_grid(images: torch.Tensor, columns: int, scale: int = 1, padding: int = 2) -> Image.Image:
    """uint8 ``(N, 1, H, W)`` 0..255 -> one grayscale PIL image, ``columns`` images a row.

    Cells are separated by ``padding`` pixels of mid grey; ``scale`` is nearest-neighbour.
    """
    n, _, h, w = images.shape
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    canvas = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding), 128, dtype=np.uint8)
    pixels = images[:, 0].to(torch.uint8).numpy()
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        canvas[top : top + h, left : left + w] = pixels[k]
    picture = Image.fromarray(canvas, mode="L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def plot_curves(metrics_path: Path, out_path: Path) -> None:
    """Plot train and validation bits/dim from a JSONL metrics log into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_x, train_y, val_x, val_y = [], [], [], []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train":
            train_x.append(row["epoch_progress"])
            train_y.append(row["bits_per_dim"])
        elif row.get("kind") == "validation":
            val_x.append(row["epoch_progress"])
            val_y.append(row["bits_per_dim"])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(train_x, train_y, label="train (running mean)", alpha=0.7)
    ax.plot(val_x, val_y, "o-", label="validation (EMA weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits / dim")
    if train_y or val_y:
        low = min(train_y + val_y)
        ax.set_ylim(low - 0.05, min(max(train_y + val_y), low + 1.5))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
