"""The caches of incremental inference (Ramachandran et al. 2017), one per architecture.

Every layer's activation at pixel q depends only on pixels before q, so it can be computed
once, at the moment q is the next pixel, and cached for the layers above. Each layer then
computes each position exactly once: the total arithmetic of sampling a whole image is one
forward pass, spread over ``H * W`` small steps.

- ``gated``: at the start of row i the vertical stack of every layer is computed for the
  whole row (it sees only rows above i), then each pixel runs the horizontal stack at one
  position, reading a window of the current row kept per layer.
- ``gated-attention``: as ``gated``; after each attention block's gated layer the block runs
  at the one new position, appending its key and value to a per-block cache and reading all of
  the cached ones (the key/value cache of a transformer decoder).
- ``pixelcnn``: every layer runs at one position per step, reading a window of the cache of
  the layer below (masked weights make the rows and columns it may not see zero).

Colour models (``image_channels`` K = 3) take K steps per pixel, one per colour, red first.
Only the current pixel's own taps (the centre taps, masked by colour group, see
``model.network.channels``) read its colours, so a colour step recomputes just the current
position of every layer, with the colours written so far; the vertical stacks and every other
cached position stay as they are. At colour step k the features of groups 0 .. k are exact
(group g reads colours before g), so after the last colour step the current position holds
exactly what the forward pass computes there, and later pixels read it as they would in
grayscale. Colour k's logits read only feature group k.

Caches are channels-last, so a window ``[:, j : j + k, :]`` flattens into a vector without
copying; the conv weights are permuted once to match. All caches are float32 ``(B, ...)``.
``model.inference.cached`` runs them: the fast sampler and teacher-forced logits.
"""

from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from model.inference.attention_cache import AttentionCache
from model.inference.incremental import (
    IncrementalModel,
    applied_weight,
    linear,
    pointwise_weight,
    window_weight,
)
from model.network.attention import CausalSelfAttention
from model.network.layers import GatedLayer, GatedStem, MaskedConv2d, ResidualBlock
from model.network.pixelcnn import PixelCNN


class GatedCache(IncrementalModel):
    # "gated" is per-pixel scratch; "attention_state" lists the attention blocks' key/value caches.
    STATE = ("conds", "inp", "v_in", "h_row", "stem_row", "vh_row", "previous", "attention_state")

    def __init__(self, model: PixelCNN, labels: torch.Tensor | None, batch: int):
        super().__init__(model, labels, batch)
        cfg, n, s = model.config, batch, self.size
        c = cfg.channels
        stem = model.stem
        assert isinstance(stem, GatedStem)
        self.k = stem.k
        k = self.k
        # Padded input, channels-last: k rows on top, k columns each side (as GatedStem pads);
        # K + 1 channels: each colour's intensity and the constant one.
        self.inp = torch.zeros(n, s + k, s + 2 * k, self.colours + 1)
        self.stem_v = stem.vertical
        stem_w, stem_b = stem.horizontal.weight, stem.horizontal.bias
        if stem.current_pixel is not None:
            # Colour: the current pixel's earlier colours reach the horizontal stream through a
            # type A 1x1 conv; as one more column of the horizontal window, both are one matmul.
            current = stem.current_pixel
            assert stem_b is not None and current.bias is not None  # both convs have biases
            stem_w = torch.cat([stem_w, applied_weight(current)], dim=3)
            stem_b = stem_b + current.bias
        self.stem_columns = stem_w.shape[3]  # k columns before the pixel, and the pixel in colour
        self.stem_h_wt = window_weight(stem_w).t()  # transposed as a view, for ``linear``
        self.stem_h_b = stem_b
        self.stem_v2h = pointwise_weight(stem.vertical_to_horizontal)
        self.layers = [layer for layer in model.blocks if isinstance(layer, GatedLayer)]
        first = self.layers[0]
        self.kh, self.kw, self.col_pad = first.kh, first.kw, first.col_pad
        # Vertical inputs of every layer, NCHW (row convs run as ordinary conv2d), top-padded.
        self.v_in = [torch.zeros(n, c, s + self.kh - 1, s + 2 * self.col_pad) for _ in self.layers]
        # Horizontal inputs of every layer (and the last output) for the current row only,
        # flat: position p is columns [p * C, (p + 1) * C), so a window is one slice.
        self.h_row = [torch.zeros(n, (s + self.kw - 1) * c) for _ in range(len(self.layers) + 1)]
        self.h_wt = [window_weight(applied_weight(layer.horizontal)).t() for layer in self.layers]
        # residual_and_skip is split: the residual half runs per layer (fused with the add),
        # the skip halves of all layers run as one batched matmul at the end of the pixel.
        # Gate outputs carry a constant 1 in an extra last column and the weights a bias row,
        # so neither needs a separate bias add.
        res_w, skip_w = [], []
        for layer in self.layers:
            w, b = pointwise_weight(layer.residual_and_skip)
            full = torch.cat([w.t(), (torch.zeros(2 * c) if b is None else b).unsqueeze(0)])  # (C+1, 2C)
            res_w.append(full[:, :c].contiguous())
            skip_w.append(full[:, c:])
        self.res_w = res_w
        self.skip_w = torch.stack(skip_w)  # (L, C+1, C): gated (L, B, C+1) @ skip_w -> (L, B, C)
        self.gated = torch.ones(len(self.layers), n, c + 1)  # this pixel's gate outputs, and a 1
        self.gated_rows = list(self.gated.unbind(0))
        self.gated_out = [rows[:, :c] for rows in self.gated_rows]
        # Per-pixel scratch, reused: the horizontal pre-activation and its two gate halves.
        self.h_pre = torch.empty(n, 2 * c)
        self.h_a, self.h_g = self.h_pre[:, :c], self.h_pre[:, c:]
        self.tanh_a, self.sigmoid_g = torch.empty(n, c), torch.empty(n, c)
        self.stem_row = torch.zeros(n, s, c)  # stem's vertical-to-horizontal term, this row
        self.vh_row = [torch.zeros(n, s, 2 * c) for _ in self.layers]  # per-layer v->h + cond
        # gated-attention: a key/value cache per block, and the value of the pixel before the
        # next one (``levels`` before the first pixel: the attention's "no previous pixel").
        self.attention = {
            int(index): AttentionCache(block, n, s * s, self.input_table)
            for index, block in model.attention.items()
            if isinstance(block, CausalSelfAttention)
        }
        self.attention_state = [t for cache in self.attention.values() for t in cache.state()]
        # Colour attention: the encoded pixel before each position (zeros before the first), as
        # views of ``inp``; a grayscale block looks the previous value up in a table instead.
        self.previous_at: list[torch.Tensor] = []
        if self.colours > 1 and self.attention:
            inp_at = [self.inp[:, row + k, column + k] for row in range(s) for column in range(s)]
            self.previous_at = [torch.zeros(n, self.colours + 1), *inp_at[:-1]]
        self.previous = torch.full((n,), self.levels, dtype=torch.long)
        self.row = -1  # the row begun last

    # Views of every layer's window and position j, made on first use (a cache that is never
    # stepped, as the one ``kernel_weights`` lays weights out from, never makes them) and then
    # kept: slicing per pixel would be a third of the step's ops. The buffers behind them are
    # only ever written in place.
    @cached_property
    def window_at(self) -> list[list[torch.Tensor]]:
        c, kw = self.model.config.channels, self.kw
        return [[row[:, j * c : (j + kw) * c] for j in range(self.size)] for row in self.h_row[:-1]]

    @cached_property
    def position_at(self) -> list[list[torch.Tensor]]:
        c, kw = self.model.config.channels, self.kw
        return [[row[:, (j + kw - 1) * c : (j + kw) * c] for j in range(self.size)] for row in self.h_row]

    @cached_property
    def vh_at(self) -> list[list[torch.Tensor]]:
        return [[vh[:, j] for j in range(self.size)] for vh in self.vh_row]

    @cached_property
    def stem_at(self) -> list[torch.Tensor]:
        return [self.stem_row[:, j] for j in range(self.size)]

    @cached_property
    def stem_window_at(self) -> list[list[torch.Tensor]]:
        """The stem's window at each pixel, flat (views of ``inp``)."""
        s, k, columns = self.size, self.k, self.stem_columns
        return [
            [self.inp[:, row + k, j : j + columns].view(self.batch, -1) for j in range(s)] for row in range(s)
        ]

    @cached_property
    def pixel_at(self) -> list[list[torch.Tensor]]:
        """Each pixel's input channels (views of ``inp``)."""
        s, k = self.size, self.k
        return [[self.inp[:, row + k, j + k] for j in range(s)] for row in range(s)]

    def live_part(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        # After begin_row(i), the vertical stacks' inputs are read again only at padded rows
        # i+1 .. i+kh-1 (begin_row(i+1) writes row i+kh itself): a few rows of each layer's
        # (B, C, H + kh - 1, W + 2 * pad) map, where copying all of it would dominate resampling.
        if name == "v_in":
            return tensor[:, :, self.row + 1 : self.row + self.kh]
        return tensor

    def begin_row(self, i: int) -> None:
        self.row = i
        k, s = self.k, self.size
        # Stem vertical: padded rows i .. i+k-1 are image rows i-k .. i-1.
        rows = self.inp[:, i : i + k].permute(0, 3, 1, 2)
        v = self.stem_v(rows)[:, :, :1]  # (B, C, 1, W)
        w, b = self.stem_v2h
        self.stem_row.copy_(F.linear(v[:, :, 0].transpose(1, 2), w, b))
        for idx, layer in enumerate(self.layers):
            self.v_in[idx][:, :, i + self.kh - 1, self.col_pad : self.col_pad + s] = v[:, :, 0]
            window = self.v_in[idx][:, :, i : i + self.kh]
            v_pre = layer.vertical(window)  # (B, 2C, 1, W)
            vh = layer.vertical_to_horizontal(v_pre)[:, :, 0].transpose(1, 2)  # (B, W, 2C)
            cond = self.conds[idx]
            if cond is not None:
                cond_v, cond_h = cond.chunk(2, dim=1)
                v_pre = v_pre + cond_v[:, :, None, None]
                vh = vh + cond_h[:, None, :]
            bias = layer.horizontal.bias
            assert bias is not None  # GatedLayer's horizontal conv has one
            torch.add(vh, bias, out=self.vh_row[idx])
            a, g = v_pre.chunk(2, dim=1)
            v = torch.tanh(a) * torch.sigmoid(g)
        for row in self.h_row:
            row.zero_()

    def logits(self, i: int, j: int, colour: int = 0) -> torch.Tensor:
        # Stem horizontal: padded columns j .. j+k-1 are image columns j-k .. j-1 of row i
        # (and, for colour, column j+k the pixel itself, behind the type A mask).
        first = self.position_at[0][j]
        stem = linear(self.stem_window_at[i][j], self.stem_h_wt, self.stem_h_b)
        torch.add(stem, self.stem_at[j], out=first)
        for idx in range(len(self.layers)):
            torch.addmm(self.vh_at[idx][j], self.window_at[idx][j], self.h_wt[idx], out=self.h_pre)
            torch.tanh(self.h_a, out=self.tanh_a)
            torch.sigmoid(self.h_g, out=self.sigmoid_g)
            torch.mul(self.tanh_a, self.sigmoid_g, out=self.gated_out[idx])
            # h_out = h_in + residual(gated) + bias, in one addmm, into the next layer's row.
            position = self.position_at[idx][j]
            torch.addmm(position, self.gated_rows[idx], self.res_w[idx], out=self.position_at[idx + 1][j])
            if idx in self.attention:  # in place, before the next layer reads this position
                if self.colours == 1:
                    self.attention[idx].step(i * self.size + j, self.position_at[idx + 1][j], self.previous)
                else:
                    t = i * self.size + j
                    self.attention[idx].colour_step(
                        t, self.position_at[idx + 1][j], self.previous_at[t], colour
                    )
        return self.head(torch.bmm(self.gated, self.skip_w).sum(0), colour)

    def write(self, i: int, j: int, values: torch.Tensor, colour: int = 0) -> None:
        self.encode_into(self.pixel_at[i][j], values, colour)
        if self.colours == 1:
            self.previous.copy_(values)


class PixelCNNCache(IncrementalModel):
    STATE = ("conds", "inp", "mid")

    def __init__(self, model: PixelCNN, labels: torch.Tensor | None, batch: int):
        super().__init__(model, labels, batch)
        n, s = batch, self.size
        stem = model.stem
        assert isinstance(stem, MaskedConv2d)
        self.p = stem.pad
        self.inp = torch.zeros(n, s + self.p, s + 2 * self.p, self.colours + 1)
        self.stem_w = window_weight(stem.masked_weight(), rows=self.p + 1)
        self.stem_b = stem.bias
        self.blocks = [block for block in model.blocks if isinstance(block, ResidualBlock)]
        self.q = self.blocks[0].masked.pad
        half = model.config.channels // 2
        # Per block, the masked conv's input (after reduce and ReLU), padded like the conv.
        self.mid = [torch.zeros(n, s + self.q, s + 2 * self.q, half) for _ in self.blocks]
        self.masked_w = [window_weight(b.masked.masked_weight(), rows=self.q + 1) for b in self.blocks]
        self.reduce = [pointwise_weight(b.reduce) for b in self.blocks]
        self.expand = [pointwise_weight(b.expand) for b in self.blocks]

    def begin_row(self, i: int) -> None:
        pass  # every layer works one pixel at a time

    def logits(self, i: int, j: int, colour: int = 0) -> torch.Tensor:
        p, q = self.p, self.q
        # Stem (type A): padded rows i .. i+p, columns j .. j+2p = image rows i-p .. i,
        # columns j-p .. j+p; the mask zeroes (i, j) (for colour: all but the colours before
        # each group) and everything after it.
        window = self.inp[:, i : i + p + 1, j : j + 2 * p + 1].reshape(self.batch, -1)
        x = F.linear(window, self.stem_w, self.stem_b)
        for idx, block in enumerate(self.blocks):
            cond = self.conds[idx]
            h = x if cond is None else x + cond
            w, b = self.reduce[idx]
            self.mid[idx][:, i + q, j + q] = F.relu(F.linear(F.relu(h), w, b))
            window = self.mid[idx][:, i : i + q + 1, j : j + 2 * q + 1].reshape(self.batch, -1)
            h = F.relu(F.linear(window, self.masked_w[idx], block.masked.bias))
            w, b = self.expand[idx]
            x = x + F.linear(h, w, b)
        return self.head(x, colour)

    def write(self, i: int, j: int, values: torch.Tensor, colour: int = 0) -> None:
        self.encode_into(self.inp[:, i + self.p, j + self.p], values, colour)


def incremental(model: PixelCNN, labels: torch.Tensor | None, batch: int) -> IncrementalModel:
    """The cache matching ``model``'s architecture."""
    cache = PixelCNNCache if model.config.arch == "pixelcnn" else GatedCache
    return cache(model, labels, batch)
