"""The PixelCNN network and its config: classic masked PixelCNN and Gated PixelCNN.

``PixelCNN(config).forward(x, labels)`` maps integer images ``(B, 1, H, W)`` in
``[0, levels)`` to logits ``(B, levels, H, W)``: a categorical distribution over the
intensity of each pixel given every pixel before it in raster order (and the label). A colour
model (``image_channels=3``) maps ``(B, 3, H, W)`` to ``(B, levels, 3, H, W)``: each colour
given the pixels before and the pixel's earlier colours (``model.network.channels``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.network.attention import CausalSelfAttention
from model.network.channels import feature_groups, input_groups, pointwise
from model.network.layers import GatedLayer, GatedStem, MaskedConv2d, ResidualBlock

# "pixelcnn": masked convolutions (with the classic blind spot); "gated": vertical and horizontal
# stacks, no blind spot, a receptive field of a few rows; "gated-attention": the gated stacks with
# causal self-attention blocks between them, so every pixel sees every pixel before it.
ARCHITECTURES = ("pixelcnn", "gated", "gated-attention")


@dataclass(frozen=True)
class PixelCNNConfig:
    """Everything needed to rebuild a network; a checkpoint stores it as JSON."""

    arch: str = "gated"  # one of ARCHITECTURES
    channels: int = 64  # width of every hidden feature map
    layers: int = 12  # residual blocks (pixelcnn) or gated layers (gated) after the first
    levels: int = 256  # intensity levels per pixel; the softmax has this many classes
    image_size: int = 28  # square images, in pixels
    num_classes: int | None = None  # class-conditional when set (10 for Fashion-MNIST)
    kernel_size: int = 7  # first layer's kernel (type A mask, or the gated stem)
    hidden_kernel_size: int = 3  # kernel of every later masked / gated conv
    head_channels: int = 128  # width of the 1x1 output layers before the softmax
    attention_every: int = 4  # gated-attention: an attention block after every N-th gated layer
    attention_heads: int = 2  # gated-attention: heads per attention block
    # What each label means, from the data set the model was trained on (None: "0", "1", ...).
    class_names: tuple[str, ...] | None = None
    image_channels: int = 1  # 1: grayscale; 3: RGB, with the colour channel masks (channels.py)

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
        if self.arch == "gated-attention":
            if not 1 <= self.attention_every < self.layers:
                raise ValueError(f"attention_every must be in 1..layers-1, got {self.attention_every}")
            if self.attention_heads < 1 or self.channels % self.attention_heads:
                raise ValueError(
                    f"attention_heads must divide channels ({self.channels}), got {self.attention_heads}"
                )
        if self.image_channels not in (1, 3):
            raise ValueError(f"image_channels must be 1 (grayscale) or 3 (RGB), got {self.image_channels}")
        if self.image_channels > 1 and min(self.channels // 2, self.head_channels) < self.image_channels:
            raise ValueError("a colour model needs channels of at least 6 and head_channels of at least 3")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be positive or None, got {self.num_classes}")
        if self.class_names is not None:
            if len(self.class_names) != (self.num_classes or 0):
                raise ValueError(
                    f"class_names has {len(self.class_names)} names for num_classes {self.num_classes}"
                )
            if len(set(self.class_names)) != len(self.class_names):
                raise ValueError("class_names must be distinct")

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of each label: ``class_names``, or "0", "1", ... (empty: unconditional)."""
        if self.class_names is not None:
            return self.class_names
        return tuple(str(k) for k in range(self.num_classes or 0))

    @property
    def attention_after(self) -> tuple[int, ...]:
        """Indices of the gated layers followed by an attention block (none for other archs).

        Never after the last layer: the output reads the skip connections, not the stream.
        """
        if self.arch != "gated-attention":
            return ()
        return tuple(range(self.attention_every - 1, self.layers - 1, self.attention_every))

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        if self.image_channels == 1:
            del fields["image_channels"]  # grayscale files keep the header they always had
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PixelCNNConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        data: dict[str, Any] = json.loads(text)
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        if isinstance(data.get("class_names"), list):
            data["class_names"] = tuple(str(name) for name in data["class_names"])
        return cls(**data)


def previous_pixels(encoded: torch.Tensor) -> torch.Tensor:
    """Encoded input ``(B, E, H, W)`` -> ``(B, H*W, E)``: at p the pixel before p, zeros at p = 0."""
    flat = encoded.flatten(2).transpose(1, 2)
    return F.pad(flat, (0, 0, 1, 0))[:, :-1]


class OutputHead(nn.Module):
    """ReLU, 1x1 conv, ReLU, 1x1 conv to ``levels`` logits per colour:
    ``(B, C, H, W) -> (B, colours * L, H, W)``, colour-major; type B masked for colour."""

    def __init__(self, channels: int, head_channels: int, levels: int, colours: int = 1):
        super().__init__()
        hidden, features = feature_groups(head_channels, colours), feature_groups(channels, colours)
        logits = torch.arange(colours).repeat_interleave(levels)
        colour = colours > 1
        self.hidden = pointwise(channels, head_channels, (hidden, features) if colour else None)
        self.logits = pointwise(head_channels, colours * levels, (logits, hidden) if colour else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.hidden(F.relu(x))))


class PixelCNN(nn.Module):
    """Autoregressive image model over ``levels`` intensities, classic or gated."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        c, colours = config.channels, config.image_channels
        # Input channels: the scaled intensity of each colour and a constant one, so that zero
        # padding (where the constant channel is 0) is distinguishable from a mid-grey pixel.
        inputs = colours + 1
        if config.arch == "pixelcnn":
            stem_groups = (feature_groups(c, colours), input_groups(colours)) if colours > 1 else None
            self.stem: nn.Module = MaskedConv2d(inputs, c, config.kernel_size, "A", stem_groups)
            self.blocks = nn.ModuleList(
                ResidualBlock(c, config.hidden_kernel_size, colours) for _ in range(config.layers)
            )
            cond_width = c
        else:
            self.stem = GatedStem(inputs, c, config.kernel_size, colours)
            self.blocks = nn.ModuleList(
                GatedLayer(c, config.hidden_kernel_size, colours) for _ in range(config.layers)
            )
            cond_width = 4 * c
        # Keyed by the index of the gated layer each block follows.
        self.attention = nn.ModuleDict(
            {
                str(i): CausalSelfAttention(
                    c, config.attention_heads, config.image_size, inputs, shifted=colours > 1
                )
                for i in config.attention_after
            }
        )
        self.cond_width = cond_width
        self.label_embedding = (
            nn.Embedding(config.num_classes, config.layers * cond_width)
            if config.num_classes is not None
            else None
        )
        self.head = OutputHead(c, config.head_channels, config.levels, colours)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        """Integer images ``(B, K, H, W)`` -> float ``(B, K + 1, H, W)`` in [-1, 1] plus ones."""
        scaled = x.float() * (2.0 / (self.config.levels - 1)) - 1.0
        return torch.cat([scaled, torch.ones_like(scaled[:, :1])], dim=1)

    def shape_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's ``(B, K * L, H, W)`` as the interface gives them: ``(B, L, H, W)`` for a
        grayscale model, ``(B, L, K, H, W)`` (a colour axis after the levels) for colour."""
        k = self.config.image_channels
        if k == 1:
            return logits
        b, _, height, width = logits.shape
        return logits.view(b, k, -1, height, width).transpose(1, 2)

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
        """``x``: int ``(B, K, H, W)`` in ``[0, levels)``, K = ``image_channels``; ``labels``:
        ``(B,)`` or None (an unconditional model ignores them).

        Returns logits ``(B, levels, H, W)`` for a grayscale model and ``(B, levels, K, H, W)``
        for colour: colour k's logits at pixel p depend on the pixels before p and on colours
        0 .. k-1 of p (red first, then green, then blue).
        """
        k = self.config.image_channels
        if x.dim() != 4 or x.shape[1] != k:
            raise ValueError(f"x must have shape (B, {k}, H, W), got {tuple(x.shape)}")
        conds = self.label_biases(labels, x.shape[0])
        inp = self.encode_input(x)
        if self.config.arch == "pixelcnn":
            h = self.stem(inp)
            for block, cond in zip(self.blocks, conds, strict=True):
                h = block(h, cond)
            return self.shape_logits(self.head(h))
        v, h = self.stem(inp)
        skip = torch.zeros_like(h)
        previous = previous_pixels(inp) if len(self.attention) else inp
        for index, (layer, cond) in enumerate(zip(self.blocks, conds, strict=True)):
            v, h, s = layer(v, h, cond)
            skip = skip + s
            if str(index) in self.attention:
                h = self.attention[str(index)](h, previous)
        return self.shape_logits(self.head(skip))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
