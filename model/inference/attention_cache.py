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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.network.attention import CausalSelfAttention


class AttentionCache:
    """``step(t, h, previous)``: ``h`` ``(B, C)`` is the stream at raster position ``t`` and
    ``previous`` ``(B,)`` long the value of the pixel before it (``levels`` at t = 0, for none).
    Adds the block's output to ``h`` in place. ``keys`` ``(B, heads, d, N)`` and ``values``
    ``(B, heads, N, d)`` are the per-image state, batch first, so particles can be resampled.
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
        self.position = block.position  # (N, C)
        # previous_pixel(encoded value) for every value, and a last row for "no previous pixel"
        # (the zeros that ``previous_pixels`` pads position 0 with).
        inputs = torch.cat([input_table, torch.zeros(1, input_table.shape[1])])
        self.previous_table = block.previous_pixel(inputs)  # (levels + 1, C)
        self.keys = torch.zeros(batch, heads, d, positions)
        self.values = torch.zeros(batch, heads, positions, d)
        flat_keys = self.keys.view(batch * heads, d, positions)
        flat_values = self.values.view(batch * heads, positions, d)
        self.keys_upto = [flat_keys[:, :, : t + 1] for t in range(positions)]  # (B*heads, d, t+1)
        self.values_upto = [flat_values[:, : t + 1] for t in range(positions)]  # (B*heads, t+1, d)
        self.key_at = [self.keys[..., t] for t in range(positions)]  # (B, heads, d)
        self.value_at = [self.values[:, :, t] for t in range(positions)]

    def step(self, t: int, h: torch.Tensor, previous: torch.Tensor) -> None:
        b, c, heads = self.batch, self.channels, self.heads
        weight, bias, eps = self.norm
        tokens = F.layer_norm(h, (c,), weight, bias, eps)
        tokens += self.position[t]
        tokens += self.previous_table[previous]
        qkv = torch.addmm(self.qkv[0], tokens, self.qkv[1]).view(b, 3, heads, -1)
        self.key_at[t].copy_(qkv[:, 1])
        self.value_at[t].copy_(qkv[:, 2])
        query = qkv[:, 0].reshape(b * heads, 1, -1)
        weights = torch.softmax(torch.bmm(query, self.keys_upto[t]), dim=-1)  # (B*heads, 1, t+1)
        attended = torch.bmm(weights, self.values_upto[t]).view(b, c)  # heads side by side
        h.addmm_(attended, self.out[0]).add_(self.out[1])
