"""What every cache of incremental inference shares (``model.inference.caches`` has one per
architecture): the step interface (``begin_row``, ``logits``, ``write``), the input encoding
and output head at one pixel, particle resampling in place (``select``), and the conv weights
laid out for channels-last windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.network.channels import CentreMaskedConv2d
from model.network.pixelcnn import PixelCNN


def linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` given ``weight_t = weight.t()`` (a view, made once): the
    same matmul, bit for bit, without transposing the weight at every pixel."""
    return torch.addmm(bias, x, weight_t) if bias is not None else torch.mm(x, weight_t)


def window_weight(weight: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """Conv weight ``(out, C, kh, kw)`` -> ``(out, kh * kw * C)`` for channels-last windows."""
    if rows is not None:
        weight = weight[:, :, :rows]
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1).contiguous()


def applied_weight(conv: torch.nn.Conv2d) -> torch.Tensor:
    """A conv's weight as its forward pass applies it: times its colour mask, if it has one."""
    return conv.weight * conv.mask if isinstance(conv, CentreMaskedConv2d) else conv.weight


def pointwise_weight(conv: torch.nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    return applied_weight(conv)[:, :, 0, 0], conv.bias


class IncrementalModel:
    """Interface of both caches, one pixel (and, for colour, one colour of it) per step.

    For each row i, ``begin_row(i)``; then for each pixel j, for each colour k in 0 .. K-1
    (K = ``colours``, ``image_channels``; only k = 0 for grayscale), in this order:

    - ``logits(i, j, k)`` -> ``(B, levels)``: the distribution of colour k of pixel (i, j) given
      every pixel before it and colours 0 .. k-1 of (i, j);
    - ``write(i, j, values, k)``, ``values`` ``(B,)`` long: colour k of (i, j) becomes input.

    ``logits`` only overwrites the current position's entries, so calling it again after
    another ``write`` of the same pixel (a trial value) recomputes them from that value, and a
    look at the next pixel's logits from a trial value changes nothing once the chosen value
    is written. Colour: the current position's entries are exact once the pixel's last colour
    step has run (later pixels read them), and colour k > 0 reuses what colour 0 of the same
    pixel computed from earlier pixels only (the attention output), so take colours in order.
    """

    def __init__(self, model: PixelCNN, labels: torch.Tensor | None, batch: int):
        self.model = model
        self.batch = batch
        self.size = model.config.image_size
        self.levels = model.config.levels
        self.colours = model.config.image_channels
        self.conds = [None if c is None else c.float() for c in model.label_biases(labels, batch)]
        # Every step runs a few hundred small ops, so their count is the cost at small batches:
        # whatever does not change from pixel to pixel is looked up or sliced once, here.
        values = torch.arange(self.levels).view(-1, 1, 1, 1)
        # (levels, 2): a value's scaled intensity and the constant 1 (encode_input of one colour).
        self.input_table = model.encode_input(values).view(self.levels, 2)
        w1, b1 = pointwise_weight(model.head.hidden)
        self.head_hidden = (w1.t(), b1)  # weights transposed as views, for ``linear``
        # The head's logits layer per colour: colour k's ``levels`` rows (all of them in grayscale).
        w2, b2 = pointwise_weight(model.head.logits)
        rows = [slice(k * self.levels, (k + 1) * self.levels) for k in range(self.colours)]
        self.head_logits = [(w2[r].t(), None if b2 is None else b2[r]) for r in rows]

    def encode_into(self, pixel: torch.Tensor, values: torch.Tensor, colour: int) -> None:
        """Write colour ``colour`` (0 in grayscale) of one pixel, model values ``(B,)``, into
        that pixel's ``(B, K + 1)`` input channels, in place (= model.encode_input, looked up)."""
        if self.colours == 1:
            pixel.copy_(torch.index_select(self.input_table, 0, values))
            return
        pixel[:, colour] = self.input_table[values, 0]
        # The constant channel is hidden from the pixel's own centre taps, so it can be set at
        # once; later pixels read it as the forward pass's encode_input gives it.
        pixel[:, -1] = 1.0

    def head(self, features: torch.Tensor, colour: int = 0) -> torch.Tensor:
        """``(B, C)`` features at one pixel -> ``(B, levels)`` logits of colour ``colour``."""
        (w1, b1), (w2, b2) = self.head_hidden, self.head_logits[colour]
        return linear(F.relu(linear(F.relu(features), w1, b1)), w2, b2)

    def begin_row(self, i: int) -> None:
        raise NotImplementedError

    def logits(self, i: int, j: int, colour: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def write(self, i: int, j: int, values: torch.Tensor, colour: int = 0) -> None:
        raise NotImplementedError

    # Names of the per-image state (tensors, or lists of tensors, with the batch first).
    STATE: tuple[str, ...] = ("conds",)

    def select(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (a ``(B,)`` long tensor): used to resample particles.

        In place, so that the views a cache keeps into its state stay valid. Only the rows
        that change are copied: resampling keeps most particles where they are, and the
        state of a large model is hundreds of MB at a few dozen particles.
        """
        moved = (index != torch.arange(index.shape[0])).nonzero().flatten()
        if moved.numel() == 0:
            return
        sources = index[moved]
        for name in self.STATE:
            value = getattr(self, name)
            for tensor in value if isinstance(value, list) else [value]:
                if tensor is not None:
                    live = self.live_part(name, tensor)
                    live[moved] = live[sources]  # the right side is gathered first

    def live_part(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The part of state ``tensor`` that later steps still read (a view): what ``select``
        must copy. All of it, unless a cache knows better."""
        return tensor
