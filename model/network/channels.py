"""Colour channel masks: within a pixel, red is predicted first, green sees red, blue sees both.

As in van den Oord et al. 2016 ("Pixel Recurrent Neural Networks"), a colour model splits every
feature map at a pixel into one group per colour channel (contiguous thirds for RGB). Taps of a
convolution that read other pixels before the current one see every channel; the tap that reads
the current pixel itself (the centre tap) is masked by channel group:

- type "A" (layers that read the image): output group g sees input colours before g;
- type "B" (every later layer): output group g sees feature groups up to and including g.

So the features of group g at pixel p depend on the pixels before p and on colours 0 .. g-1 of
p, and the logits of colour g read only group g. A grayscale model has one group: type A hides
the centre, type B shows it, exactly the masks of ``model.network.layers``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def feature_groups(width: int, colours: int, copies: int = 1) -> torch.Tensor:
    """Group of each of ``copies * width`` channels ``(copies * width,)``: contiguous shares of
    ``width``, repeated per copy (a gate's two halves, a layer's residual and skip halves)."""
    if width < colours:
        raise ValueError(f"a feature map of {width} channels cannot hold {colours} colour groups")
    return (torch.arange(width) * colours // width).repeat(copies)


def input_groups(colours: int) -> torch.Tensor:
    """Groups of the encoded input ``(colours + 1,)``: colour c is group c; the constant channel
    (last) is hidden from every type A centre tap, as a grayscale model's is."""
    return torch.cat([torch.arange(colours), torch.tensor([colours])])


def centre_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, mask_type: str) -> torch.Tensor:
    """``(out, in)`` 0/1: which input channel each output channel may read at the centre tap."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    later = out_groups[:, None] > in_groups[None, :]
    return (later if mask_type == "A" else later | (out_groups[:, None] == in_groups[None, :])).float()


class CentreMaskedConv2d(nn.Conv2d):
    """An unpadded convolution whose centre tap (``centre``: row, column of the kernel) is
    channel-masked; its other taps (pixels before the current one) see every channel.

    The caller pads so that the centre tap lands on the current pixel. Same parameters as
    ``nn.Conv2d``, so weights files keep their tensor names.
    """

    mask: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        centre: tuple[int, int],
        out_groups: torch.Tensor,
        in_groups: torch.Tensor,
        mask_type: str,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=0)
        mask = torch.ones(out_channels, in_channels, *kernel_size)
        mask[:, :, centre[0], centre[1]] = centre_mask(out_groups, in_groups, mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def pointwise(
    in_channels: int, out_channels: int, groups: tuple[torch.Tensor, torch.Tensor] | None
) -> nn.Conv2d:
    """A 1x1 convolution: plain for a grayscale model, type B channel-masked for colour
    (``groups``: the output's and the input's channel groups)."""
    if groups is None:
        return nn.Conv2d(in_channels, out_channels, 1)
    out_groups, in_groups = groups
    return CentreMaskedConv2d(in_channels, out_channels, (1, 1), (0, 0), out_groups, in_groups, "B")
