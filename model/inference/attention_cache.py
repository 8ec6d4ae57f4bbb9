"""The key/value cache of one ``CausalSelfAttention`` block, for incremental inference.

At each new raster position t the block runs once: its key and value join the cache and its
query reads every cached position 0 .. t, as a transformer decoder does. A step is a dozen small
ops, so whatever does not change from step to step is prepared once here: the query scale
folded into the weights, the previous-pixel embedding as a table over pixel values, and views
of the cache up to each position. Keys are stored transposed, ``(B, heads, d, N)``, so that both
products are row-vector-times-matrix batched matmuls (query ``(1, d)`` times keys ``(d, t+1)``,
weights ``(1, t+1)`` times values ``(t+1, d)``): on the CPU that is the fastest of the forms
we measured, ahead of scaled_dot_product_attention on a one-query slice and of elementwise
products with sums.

A colour model's block is ``shifted``: its token at t reads the stream at t - 1 and the pixel
at t - 1, so its output at t depends on no colour of pixel t: it is made once per pixel, at the
pixel's first colour step, and added again at the others (``colour_step``).
"""

from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from model.network.attention import CausalSelfAttention


class AttentionCache:
    """Grayscale: ``step(t, h, previous)``: ``h`` ``(B, C)`` is the stream at raster position
    ``t`` and ``previous`` ``(B,)`` long the value of the pixel before it (``levels`` at t = 0,
    for none). Adds the block's output to ``h`` in place.

    Colour (a ``shifted`` block): ``colour_step(t, h, previous, colour)``, the same for each
    colour step of the pixel at t, ``previous`` ``(B, K + 1)`` the encoded pixel at t - 1 (zeros
    at t = 0).

    ``keys`` ``(B, heads, d, N)`` and ``values`` ``(B, heads, N, d)`` (and in colour the streams
    and outputs) are the per-image state, batch first (``state()``), so particles can be
    resampled.
    """

    @torch.no_grad()
    def __init__(self, block: CausalSelfAttention, batch: int, positions: int, input_table: torch.Tensor):
        channels = block.norm.normalized_shape[0]
        heads = block.heads
        d = channels // heads
        self.batch, self.channels, self.heads = batch, channels, heads
        self.norm = (block.norm.weight, block.norm.bias, block.norm.eps)
        weight, bias = block.qkv.weight.clone(), block.qkv.bias.clone()
        # The 1/sqrt(d) of scaled dot-product attention, folded into the query projection.
        weight[:channels] *= d**-0.5
        bias[:channels] *= d**-0.5
        self.qkv = (bias, weight.t().contiguous())
        self.out = (block.out.weight.t().contiguous(), block.out.bias)
        self.position = block.position.detach()  # (N, C)
        self.shifted = block.shifted
        if not self.shifted:
            # previous_pixel(encoded value) for every value, and a last row for "no previous
            # pixel" (the zeros that ``previous_pixels`` pads position 0 with).
            inputs = torch.cat([input_table, torch.zeros(1, input_table.shape[1])])
            self.previous_table = block.previous_pixel(inputs)  # (levels + 1, C)
        # A colour pixel has levels ** K values, too many for a table: its embedding is computed.
        self.previous_pixel = (block.previous_pixel.weight, block.previous_pixel.bias)
        self.keys = torch.zeros(batch, heads, d, positions)
        self.values = torch.zeros(batch, heads, positions, d)
        # Colour: slot t % 2 keeps the stream before the block at position t (the token of
        # t + 1 reads it) and the block's output at t (t's later colours add it again). Two
        # slots, so that a look at t + 1 from a trial value at t (as super-resolution takes)
        # overwrites nothing that t or a second step of t + 1 reads. Position 0 reads
        # ``no_stream``.
        self.streams = [torch.zeros(batch, channels), torch.zeros(batch, channels)]
        self.outputs = [torch.zeros(batch, channels), torch.zeros(batch, channels)]
        self.no_stream = torch.zeros(batch, channels)

    # Views per position, made on first use (only a cache that is stepped needs them) and kept.
    @cached_property
    def position_at(self) -> list[torch.Tensor]:
        return list(self.position.unbind(0))  # (C,) per position

    @cached_property
    def keys_upto(self) -> list[torch.Tensor]:
        flat = self.keys.view(self.batch * self.heads, *self.keys.shape[2:])
        return [flat[:, :, : t + 1] for t in range(flat.shape[2])]  # (B*heads, d, t+1)

    @cached_property
    def values_upto(self) -> list[torch.Tensor]:
        flat = self.values.view(self.batch * self.heads, *self.values.shape[2:])
        return [flat[:, : t + 1] for t in range(flat.shape[1])]  # (B*heads, t+1, d)

    @cached_property
    def key_at(self) -> list[torch.Tensor]:
        return [self.keys[..., t] for t in range(self.keys.shape[3])]  # (B, heads, d)

    @cached_property
    def value_at(self) -> list[torch.Tensor]:
        return [self.values[:, :, t] for t in range(self.values.shape[2])]

    def state(self) -> list[torch.Tensor]:
        """The per-image tensors, batch first."""
        if self.shifted:
            return [self.keys, self.values, *self.streams, *self.outputs]
        return [self.keys, self.values]

    def step(self, t: int, h: torch.Tensor, previous: torch.Tensor) -> None:
        weight, bias, eps = self.norm
        tokens = F.layer_norm(h, (self.channels,), weight, bias, eps)
        tokens += self.position_at[t]
        tokens += torch.index_select(self.previous_table, 0, previous)
        h.addmm_(self.attend(t, tokens), self.out[0]).add_(self.out[1])

    def colour_step(self, t: int, h: torch.Tensor, previous: torch.Tensor, colour: int) -> None:
        """Colour: ``h`` ``(B, C)`` is the stream at ``t`` at colour step ``colour``, ``previous``
        ``(B, K + 1)`` the encoded pixel at t - 1. Adds the block's output to ``h`` in place.

        The output reads the stream and the pixel at t - 1 only, so colour 0 makes it and the
        later colours of the same pixel reuse it. Every step keeps ``h`` for position t + 1: the
        last colour's ``h`` is the exact stream there (a group reads only colours before it).
        """
        output = self.outputs[t % 2]
        if colour == 0:
            stream = self.streams[(t - 1) % 2] if t > 0 else self.no_stream
            weight, bias, eps = self.norm
            tokens = F.layer_norm(stream, (self.channels,), weight, bias, eps)
            tokens += self.position_at[t]
            tokens += F.linear(previous, *self.previous_pixel)
            torch.addmm(self.out[1], self.attend(t, tokens), self.out[0], out=output)
        self.streams[t % 2].copy_(h)
        h.add_(output)

    def attend(self, t: int, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, C)`` at ``t``: add their key and value to the cache and attend to keys
        0 .. t -> ``(B, C)``, the heads side by side (before the output projection)."""
        b, c, heads = self.batch, self.channels, self.heads
        qkv = torch.addmm(self.qkv[0], tokens, self.qkv[1]).view(b, 3, heads, -1)
        self.key_at[t].copy_(qkv[:, 1])
        self.value_at[t].copy_(qkv[:, 2])
        query = qkv[:, 0].reshape(b * heads, 1, -1)
        weights = torch.softmax(torch.bmm(query, self.keys_upto[t]), dim=-1)  # (B*heads, 1, t+1)
        return torch.bmm(weights, self.values_upto[t]).view(b, c)  # heads side by side
