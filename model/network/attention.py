"""Causal self-attention over raster order, for the "gated-attention" network.

Keeps the invariant of ``model.network.layers``: the output at pixel p depends only on input
pixels strictly before p. Tensors are ``(B, C, H, W)`` feature maps unless stated otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over raster order: position p reads positions 0 .. p.

    Gives every position the whole past, which convolutions only reach a few rows at a time.
    Input ``h`` ``(B, C, H, W)`` is a horizontal stream (at p it sees only pixels before p), and
    ``previous`` ``(B, H*W, E)`` the encoded input pixel just before each position in raster
    order (zeros at position 0), so that each key also carries the exact pixel it follows. Both
    depend only on pixels before p, so attending to keys 0 .. p (the diagonal included) keeps
    the causal invariant. Returns ``h`` plus the attention output, ``(B, C, H, W)``.

    The output projection starts at zero: a new block is the identity, so it can be added to
    trained convolutional weights without changing what they compute.
    """

    def __init__(
        self, channels: int, heads: int, image_size: int, input_channels: int = 2, shifted: bool = False
    ):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        # Colour: the stream at p carries some of p's own colours, which a group before them
        # must not see; reading the stream one position back keeps every group to pixels < p.
        self.shifted = shifted
        self.norm = nn.LayerNorm(channels)
        self.position = nn.Parameter(torch.zeros(image_size * image_size, channels))
        self.previous_pixel = nn.Linear(input_channels, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def tokens(self, h: torch.Tensor, previous: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Features ``(B, N, C)``, previous pixels ``(B, N, E)``, positions ``(N, C)`` -> q, k, v input."""
        return self.norm(h) + position + self.previous_pixel(previous)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, N, 3C)`` -> q, k, v each ``(B, heads, N, C / heads)``."""
        b, n, _ = x.shape
        q, k, v = x.view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(self, h: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        flat = h.flatten(2).transpose(1, 2)  # (B, N, C), raster order
        if self.shifted:
            flat = F.pad(flat, (0, 0, 1, 0))[:, :-1]  # at p the stream at p - 1 (zeros at 0)
        q, k, v = self.split_heads(self.qkv(self.tokens(flat, previous, self.position)))
        # is_causal: query p attends to keys 0 .. p, the diagonal included (see the docstring).
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        attended = attended.transpose(1, 2).reshape(b, height * width, c)
        return h + self.out(attended).transpose(1, 2).view(b, c, height, width)
