"""Lossless image compression with the model: range coding of its per-pixel distributions.

- ``range_coder``: ``compress``, ``compress_with_stats``, ``decompress``;
- ``labels``: ``best_labels``, each image's cheapest label (most of an encoder's work), or
  ``guessed_labels``, a classifier's guess (next to none);
- ``threads``: one torch thread for whatever decides a coded symbol, independent passes side
  by side;
- ``container``: the format, a 13-byte header with checksums, then the payload.

The command is ``python -m model.codec compress|decompress`` (``__main__.py``).
"""

from model.codec.container import BATCH, CodecError
from model.codec.labels import best_labels, guessed_labels
from model.codec.range_coder import TRIM_MAX_IMAGES, compress, compress_with_stats, decompress

__all__ = [
    "BATCH",
    "TRIM_MAX_IMAGES",
    "CodecError",
    "best_labels",
    "compress",
    "compress_with_stats",
    "decompress",
    "guessed_labels",
]
