"""The PixelCNN network and its config: classic masked PixelCNN and Gated PixelCNN.

``PixelCNN(config).forward(x, labels)`` maps integer images ``(B, 1, H, W)`` in
``[0, levels)`` to logits ``(B, levels, H, W)``: a categorical distribution over the
intensity of each pixel given every pixel before it in raster order (and the label).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import GatedLayer, GatedStem, MaskedConv2d, ResidualBlock

ARCHITECTURES = ("pixelcnn", "gated")


@dataclass(frozen=True)
class PixelCNNConfig:
    """Everything needed to rebuild a network; a checkpoint stores it as JSON."""

    arch: str = "gated"  # "pixelcnn" (masked convs, blind spot) or "gated" (no blind spot)
    channels: int = 64  # width of every hidden feature map
    layers: int = 12  # residual blocks (pixelcnn) or gated layers (gated) after the first
    levels: int = 256  # intensity levels per pixel; the softmax has this many classes
    image_size: int = 28  # square images, in pixels
    num_classes: int | None = None  # class-conditional when set (10 for Fashion-MNIST)
    kernel_size: int = 7  # first layer's kernel (type A mask, or the gated stem)
    hidden_kernel_size: int = 3  # kernel of every later masked / gated conv
    head_channels: int = 128  # width of the 1x1 output layers before the softmax

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256, got {self.levels}")
        for name in ("channels", "layers", "image_size", "head_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.channels % 2:
            raise ValueError(f"channels must be even, got {self.channels}")
        for name in ("kernel_size", "hidden_kernel_size"):
            value = getattr(self, name)
            if value < 3 or value % 2 == 0:
                raise ValueError(f"{name} must be odd and at least 3, got {value}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be positive or None, got {self.num_classes}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PixelCNNConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        data: dict[str, Any] = json.loads(text)
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**data)


class OutputHead(nn.Module):
    """ReLU, 1x1 conv, ReLU, 1x1 conv to ``levels`` logits: ``(B, C, H, W) -> (B, L, H, W)``."""

    def __init__(self, channels: int, head_channels: int, levels: int):
        super().__init__()
        self.hidden = nn.Conv2d(channels, head_channels, 1)
        self.logits = nn.Conv2d(head_channels, levels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.hidden(F.relu(x))))


class PixelCNN(nn.Module):
    """Autoregressive image model over ``levels`` intensities, classic or gated."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        c = config.channels
        # Two input channels: the scaled intensity and a constant one, so that zero padding
        # (where the constant channel is 0) is distinguishable from a mid-grey pixel.
        if config.arch == "pixelcnn":
            self.stem: nn.Module = MaskedConv2d(2, c, config.kernel_size, "A")
            self.blocks = nn.ModuleList(
                ResidualBlock(c, config.hidden_kernel_size) for _ in range(config.layers)
            )
            cond_width = c
        else:
            self.stem = GatedStem(2, c, config.kernel_size)
            self.blocks = nn.ModuleList(
                GatedLayer(c, config.hidden_kernel_size) for _ in range(config.layers)
            )
            cond_width = 4 * c
        self.cond_width = cond_width
        self.label_embedding = (
            nn.Embedding(config.num_classes, config.layers * cond_width)
            if config.num_classes is not None
            else None
        )
        self.head = OutputHead(c, config.head_channels, config.levels)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """Integer images ``(B, 1, H, W)`` -> float ``(B, 2, H, W)`` in [-1, 1] plus ones."""
        scaled = x.float() * (2.0 / (self.config.levels - 1)) - 1.0
        return torch.cat([scaled, torch.ones_like(scaled)], dim=1)

    def label_biases(self, labels: torch.Tensor | None, batch: int) -> list[torch.Tensor | None]:
        """Per-layer conditioning biases ``(B, cond_width)``, or Nones for no conditioning."""
        if self.label_embedding is None:
            return [None] * self.config.layers
        if labels is None:
            raise ValueError("this model is class-conditional: pass labels of shape (B,)")
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        n = self.label_embedding.num_embeddings
        if int(labels.min()) < 0 or int(labels.max()) >= n:
            raise ValueError(f"labels must be in 0..{n - 1}")
        return list(self.label_embedding(labels.long()).chunk(self.config.layers, dim=1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: int ``(B, 1, H, W)`` in ``[0, levels)``; ``labels``: ``(B,)`` or None.

        Returns logits ``(B, levels, H, W)``. An unconditional model ignores ``labels``.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (B, 1, H, W), got {tuple(x.shape)}")
        conds = self.label_biases(labels, x.shape[0])
        inp = self.encode_input(x)
        if self.config.arch == "pixelcnn":
            h = self.stem(inp)
            for block, cond in zip(self.blocks, conds, strict=True):
                h = block(h, cond)
            return self.head(h)
        v, h = self.stem(inp)
        skip = torch.zeros_like(h)
        for layer, cond in zip(self.blocks, conds, strict=True):
            v, h, s = layer(v, h, cond)
            skip = skip + s
        return self.head(skip)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
