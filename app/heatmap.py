"""The likelihood heatmap: the input beside its per-pixel bits, with a colour scale."""

from __future__ import annotations

import asyncio
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from starlette.concurrency import run_in_threadpool

# Drawing holds the GIL for most of its ~50 ms: forty at once in the thread pool starve the
# event loop (/health took seconds). One at a time keeps the loop free; the rest wait here.
RENDERING = asyncio.Semaphore(1)


async def render_heatmap(pixels: np.ndarray, bits: np.ndarray, bits_per_dim: float) -> bytes:
    """``heatmap_png`` off the event loop, one drawing at a time."""
    async with RENDERING:
        return await run_in_threadpool(heatmap_png, pixels, bits, bits_per_dim)


def heatmap_png(pixels: np.ndarray, bits: np.ndarray, bits_per_dim: float) -> bytes:
    """``pixels`` ``(C, H, W)`` uint8 (C = 1 gray, 3 RGB) and ``bits`` ``(H, W)`` float (bits
    per pixel, a colour pixel's channels summed) -> PNG bytes."""
    # The object-oriented API (no pyplot) keeps this safe to call from worker threads.
    fig = Figure(figsize=(6.4, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    if pixels.shape[0] == 1:
        left.imshow(pixels[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        left.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    left.set_title("input")
    shown = right.imshow(bits, cmap="magma", vmin=0, interpolation="nearest")
    # Grayscale: bits per pixel are bits per dimension; colour: a pixel holds three dimensions.
    colour_note = f"{bits_per_dim:.2f} bits/dim" if pixels.shape[0] > 1 else f"mean {bits_per_dim:.2f}"
    right.set_title(f"bits per pixel ({colour_note})")
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04, label="bits")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
