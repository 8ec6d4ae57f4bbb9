"""Causal building blocks for PixelCNN.

Every layer here keeps one invariant, which both the network and the cached sampler rely on:
the output at pixel (i, j) depends only on input pixels that come strictly before (i, j) in
raster order. Convolutions are written as explicit padding followed by an unpadded
``conv2d`` so that each pad side (and therefore what a position can see) is spelled out.

Tensors are ``(B, C, H, W)`` float feature maps unless stated otherwise. The attention block
of the "gated-attention" network keeps the same invariant; it lives in ``attention.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network.channels import CentreMaskedConv2d, centre_mask, feature_groups, input_groups, pointwise


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` 0/1 mask of a masked convolution.

    Type "A" hides the centre and everything after it in raster order (first layer: a pixel
    must not see itself). Type "B" shows the centre, because in later layers the feature at
    the centre already depends only on earlier pixels.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    centre = kernel_size // 2
    mask = torch.ones(kernel_size, kernel_size)
    mask[centre, centre + (1 if mask_type == "B" else 0) :] = 0  # the rest of the centre row
    mask[centre + 1 :, :] = 0  # every row below
    return mask


class MaskedConv2d(nn.Conv2d):
    """A square convolution whose weights are multiplied by a causal mask (type A or B).

    Padding is ``k // 2`` on every side (same-size output). Only the top, left and right
    pads are ever read through the mask; the bottom pad sits under masked-out weights.
    """

    mask: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        mask_type: str,
        groups: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        mask = causal_mask(kernel_size, mask_type)
        if groups is not None:  # colour: the centre tap masked by channel group (channels.py)
            centre = kernel_size // 2
            mask = causal_mask(kernel_size, "B").expand(out_channels, in_channels, -1, -1).clone()
            mask[:, :, centre, centre] = centre_mask(groups[0], groups[1], mask_type)
        self.register_buffer("mask", mask, persistent=False)
        self.pad = kernel_size // 2

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        # Same-size output needs k-1 rows of padding; the bottom ones sit under zero weights.
        return F.conv2d(F.pad(x, (p, p, p, p)), self.masked_weight(), self.bias)


class ResidualBlock(nn.Module):
    """PixelRNN-style residual block: 1x1 down, masked 3x3 type B, 1x1 up, plus the input.

    ``(B, C, H, W) -> (B, C, H, W)``. ``cond`` is an optional ``(B, C)`` bias (class
    conditioning) added to the block input before the first non-linearity.
    """

    def __init__(self, channels: int, kernel_size: int, colours: int = 1):
        super().__init__()
        half = channels // 2
        full_groups, half_groups = feature_groups(channels, colours), feature_groups(half, colours)
        colour = colours > 1
        self.reduce = pointwise(channels, half, (half_groups, full_groups) if colour else None)
        self.masked = MaskedConv2d(
            half, half, kernel_size, "B", (half_groups, half_groups) if colour else None
        )
        self.expand = pointwise(half, channels, (full_groups, half_groups) if colour else None)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = x if cond is None else x + cond[:, :, None, None]
        h = self.reduce(F.relu(h))
        h = self.masked(F.relu(h))
        h = self.expand(F.relu(h))
        return x + h


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation tanh(a) * sigmoid(b), with a and b the two halves of the channels."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedStem(nn.Module):
    """First layer of the Gated PixelCNN (the analogue of a type A mask).

    Input ``(B, Cin, H, W)``; returns the vertical and horizontal streams, each
    ``(B, C, H, W)``:
    - vertical at (i, j) sees input rows i - k//2 .. i - 1 (strictly above), columns
      j - k//2 .. j + k//2;
    - horizontal at (i, j) sees input (i, j - k//2 .. j - 1) plus the vertical stream at (i, j).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, colours: int = 1):
        super().__init__()
        self.k = kernel_size // 2
        self.vertical = nn.Conv2d(in_channels, channels, (self.k, kernel_size))
        self.horizontal = nn.Conv2d(in_channels, channels, (1, self.k))
        self.vertical_to_horizontal = nn.Conv2d(channels, channels, 1)
        # Colour: the current pixel's earlier colours reach the horizontal stream (type A).
        self.current_pixel = (
            CentreMaskedConv2d(
                in_channels,
                channels,
                (1, 1),
                (0, 0),
                feature_groups(channels, colours),
                input_groups(colours),
                "A",
            )
            if colours > 1
            else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k
        height, width = x.shape[-2:]
        # Pad k rows on top, none below, and drop the last output row: row i reads rows
        # i-k .. i-1. Left and right pads of k centre the columns.
        v = self.vertical(F.pad(x, (k, k, k, 0)))[:, :, :height]
        # Pad k columns on the left and drop the last output column: (i, j) reads j-k .. j-1.
        h = self.horizontal(F.pad(x, (k, 0, 0, 0)))[:, :, :, :width]
        if self.current_pixel is not None:
            h = h + self.current_pixel(x)
        return v, h + self.vertical_to_horizontal(v)


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (no blind spot).

    Inputs ``v, h`` are ``(B, C, H, W)`` and ``cond`` an optional ``(B, 4C)`` class bias
    (first half for the vertical gate, second half for the horizontal gate). Returns the new
    ``v, h`` and this layer's skip contribution, all ``(B, C, H, W)``.

    - vertical conv ``(kh, k)``: (i, j) reads v rows i-kh+1 .. i, columns j-k//2 .. j+k//2;
      safe because v at row i already sees only rows above i.
    - horizontal conv ``(1, kw)``: (i, j) reads h at (i, j-kw+1 .. j); safe because h at
      (i, j) already sees only pixels before (i, j).
    - the vertical pre-activation at (i, j) feeds the horizontal gate through a 1x1 conv.
    """

    def __init__(self, channels: int, kernel_size: int, colours: int = 1):
        super().__init__()
        self.kh = kernel_size // 2 + 1
        self.kw = kernel_size // 2 + 1
        self.col_pad = kernel_size // 2
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.kh, kernel_size))
        # Modules are made in this order so that a seeded model's initial weights stay the same.
        if colours == 1:
            self.horizontal: nn.Conv2d = nn.Conv2d(channels, 2 * channels, (1, self.kw))
        else:
            # Colour: the horizontal kernel's last tap is the current pixel (type B by group);
            # a gate's two halves and the residual and skip halves keep the stream's groups.
            groups, doubled = feature_groups(channels, colours), feature_groups(channels, colours, copies=2)
            self.horizontal = CentreMaskedConv2d(
                channels, 2 * channels, (1, self.kw), (0, self.kw - 1), doubled, groups, "B"
            )
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        if colours == 1:
            # One 1x1 conv gives both the residual (first C channels) and the skip (last C).
            self.residual_and_skip = nn.Conv2d(channels, 2 * channels, 1)
        else:
            self.residual_and_skip = pointwise(channels, 2 * channels, (doubled, groups))

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Top pad kh-1, no bottom pad: row i reads rows i-kh+1 .. i. Sides centre the columns.
        v_pre = self.vertical(F.pad(v, (self.col_pad, self.col_pad, self.kh - 1, 0)))
        # Left pad kw-1, no right pad: (i, j) reads j-kw+1 .. j.
        h_pre = self.horizontal(F.pad(h, (self.kw - 1, 0, 0, 0)))
        h_pre = h_pre + self.vertical_to_horizontal(v_pre)
        if cond is not None:
            cond_v, cond_h = cond[:, :, None, None].chunk(2, dim=1)
            v_pre = v_pre + cond_v
            h_pre = h_pre + cond_h
        residual, skip = self.residual_and_skip(gate(h_pre)).chunk(2, dim=1)
        return gate(v_pre), h + residual, skip
