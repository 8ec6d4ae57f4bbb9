"""The training curves of a run: train and validation bits/dim from its metrics log, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


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
