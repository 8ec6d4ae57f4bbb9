"""Lossless image compression with the model: range coding of its per-pixel distributions.

- ``range_coder``: ``compress``, ``compress_with_stats``, ``decompress`` (and ``best_labels``);
- ``container``: the format, a 13-byte header with checksums, then the payload.

The command is ``python -m model.codec compress|decompress`` (``__main__.py``).
"""

from model.codec.container import CodecError
from model.codec.range_coder import (
    BATCH,
    TRIM_MAX_IMAGES,
    best_labels,
    compress,
    compress_with_stats,
    decompress,
)

__all__ = [
    "BATCH",
    "TRIM_MAX_IMAGES",
    "CodecError",
    "best_labels",
    "compress",
    "compress_with_stats",
    "decompress",
]
