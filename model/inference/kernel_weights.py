"""The compiled row loops' weights, laid out once per network (see ``model.inference.row_kernel``).

Laying a network's weights out for the loops (transposed, stacked per layer, as contiguous
float32 arrays) takes a few milliseconds, as long as the loops take for a row; a service
draws many small batches from one network, so the arrays are kept per network and made
again only when one of its parameters changes (a parameter's version counts its in-place
updates, as training or ``load_state_dict`` make).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from model.inference.caches import GatedCache, incremental
from model.inference.incremental import applied_weight, pointwise_weight, window_weight

if TYPE_CHECKING:
    from model.inference.attention_cache import AttentionCache
    from model.network.pixelcnn import PixelCNN


def float32_array(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous float32 copy of a (weight) tensor, for the loops."""
    return tensor.detach().to(torch.float32).contiguous().numpy()


@dataclass(frozen=True)
class KernelWeights:
    """Shapes as ``sample_row`` and ``vertical_row`` document them (L layers, A attention
    blocks, C channels)."""

    stem: tuple[np.ndarray, np.ndarray]  # the stem's horizontal weight (k * 2, C) and bias (C,)
    horizontal: np.ndarray  # (L, kw * C, 2C)
    pointwise: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # residual and skip, (L, C, C), (L, C)
    attention: tuple[np.ndarray, ...]  # per block, stacked (A, ...)
    block_of: np.ndarray  # (L,) int64: the attention block after each layer, -1 for none
    head: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    stem_vertical: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    vertical: tuple[np.ndarray, np.ndarray, np.ndarray]  # (L, kh, kv * C, 2C), (L, 2C), (L, 2C, 2C)
    heads: int


_KEPT: weakref.WeakKeyDictionary[PixelCNN, tuple[tuple[tuple[int, int], ...], KernelWeights]] = (
    weakref.WeakKeyDictionary()
)


def kernel_weights(model: PixelCNN) -> KernelWeights:
    """The loops' weights for ``model``, made at most once per parameter version (from the
    torch step's cache of one image, which holds them prepared: transposed, with the
    attention's query scale folded in)."""
    version = tuple((id(p), p._version) for p in model.parameters())
    kept = _KEPT.get(model)
    if kept is None or kept[0] != version:
        labels = None if model.config.num_classes is None else torch.zeros(1, dtype=torch.long)
        with torch.no_grad():
            state = incremental(model, labels, 1)
        assert isinstance(state, GatedCache)
        kept = (version, _lay_out(state))
        _KEPT[model] = kept
    return kept[1]


def _lay_out(state: GatedCache) -> KernelWeights:
    c, levels, positions = state.model.config.channels, state.levels, state.size * state.size
    layers = state.layers
    assert state.stem_h_b is not None  # the gated stem's horizontal conv has a bias
    res_w, skip_w = torch.stack(state.res_w), state.skip_w  # (L, C + 1, C): the bias last
    blocks = sorted(state.attention.items())
    block_of = np.full(len(layers), -1, dtype=np.int64)
    for number, (layer, _) in enumerate(blocks):
        block_of[layer] = number
    caches = [cache for _, cache in blocks]

    def stacked(part: Callable[[AttentionCache], torch.Tensor], shape: tuple[int, ...]) -> np.ndarray:
        """One weight of every block, stacked ``(A, ...)`` (empty without attention)."""
        return (
            float32_array(torch.stack([part(cache) for cache in caches]))
            if caches
            else np.zeros(shape, np.float32)
        )

    (w1, b1), (w2, b2) = state.head_hidden, state.head_logits[0]
    assert b1 is not None and b2 is not None  # the head's 1x1 convs have biases
    stem = state.stem_v
    stem_v2h_w, stem_v2h_b = state.stem_v2h
    assert stem.bias is not None and stem_v2h_b is not None  # the stem's convs have biases
    kh, kv = layers[0].vertical.kernel_size
    return KernelWeights(
        stem=(float32_array(state.stem_h_wt), float32_array(state.stem_h_b)),
        horizontal=float32_array(torch.stack(state.h_wt)),
        pointwise=(
            float32_array(res_w[:, :-1]),
            float32_array(res_w[:, -1]),
            float32_array(skip_w[:, :-1]),
            float32_array(skip_w[:, -1]),
        ),
        attention=(
            stacked(lambda cache: torch.stack(cache.norm[:2]), (0, 2, c)),
            np.array([caches[0].norm[2] if caches else 1e-5], dtype=np.float64),
            stacked(lambda cache: cache.position, (0, positions, c)),
            stacked(lambda cache: cache.previous_table, (0, levels + 1, c)),
            stacked(lambda cache: cache.qkv[1], (0, c, 3 * c)),
            stacked(lambda cache: cache.qkv[0], (0, 3 * c)),
            stacked(lambda cache: cache.out[0], (0, c, c)),
            stacked(lambda cache: cache.out[1], (0, c)),
        ),
        block_of=block_of,
        head=(
            float32_array(w1),
            float32_array(b1),
            float32_array(w2),
            float32_array(b2),
            float32_array(state.input_table),
        ),
        stem_vertical=(
            float32_array(window_weight(applied_weight(stem)).t().reshape(stem.kernel_size[0], -1, c)),
            float32_array(stem.bias),
            float32_array(stem_v2h_w.t()),
            float32_array(stem_v2h_b),
        ),
        vertical=(
            float32_array(
                torch.stack([window_weight(applied_weight(layer.vertical)).t() for layer in layers]).view(
                    len(layers), kh, kv * c, 2 * c
                )
            ),
            float32_array(torch.stack([layer.vertical.bias for layer in layers])),  # type: ignore[misc]
            float32_array(
                torch.stack([pointwise_weight(layer.vertical_to_horizontal)[0].t() for layer in layers])
            ),
        ),
        heads=caches[0].heads if caches else 1,
    )
