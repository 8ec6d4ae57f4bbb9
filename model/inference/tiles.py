"""Register tiles for ``affine_rows``: a block of rows times 32 outputs summed in registers.

A matrix-vector loop that adds ``x[k] * w[k]`` into the output row for each k loads and
stores the output once per k, and memory, not arithmetic, sets its pace. A tile keeps
``rows x 32`` partial sums in named local variables for the whole sum over k: LLVM keeps
them in vector registers (its SLP vectoriser packs the 32 scalars of a row into 4 vectors of
8), loads each weight row once for all rows of the tile, and stores each output once. On a
2-core CPU a tile of 4 rows did about 30 billion multiply-adds a second, the plain loop 20.

The tiles are generated from one template, as writing 4 x 32 accumulators out by hand would
hide the one line that matters: ``a_i_j = fma(x_i, w_j, a_i_j)``, one fused multiply-add per
term, in k order; the same operations, in the same order, as ``affine_rows``'s plain loop, so
both give the same bits. numba runs LLVM without the SLP vectoriser unless asked (it was
switched off after miscompilations in older LLVM releases); this module asks before any
compilation. The tests check the tiles against the plain loop and against float64 sums.

``fma`` is LLVM's fused multiply-add, asked for explicitly: with ``fastmath={"contract"}``
the compiler may fuse a multiply and an add or not, and decided differently when the same
loop was compiled inside another function, so the bits of a result changed between a fresh
compilation and numba's cached one. Explicit fused operations, and no fastmath anywhere,
leave it no choice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numba.core.config
import numpy as np
from numba import njit
from numba.core import types
from numba.core.extending import intrinsic

_CONFIG: Any = numba.core.config  # module attributes that type checkers do not see
# Read when each function is compiled, not at import; in the environment too, as the compiler
# reloads its settings from it whenever a NUMBA_ variable there changes.
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
_CONFIG.SLP_VECTORIZE = int(os.environ["NUMBA_SLP_VECTORIZE"])


def _cache_directory() -> str:
    """Where numba caches the compiled loops: a folder named after a digest of their sources.

    numba checks a cached function against its own source file only, but the loops in
    ``kernels`` and ``vertical_kernel`` inline the ones in ``vector_ops`` and here: an edit to
    those would leave stale cached loops. Under a folder per digest of all four, an edit to
    any starts afresh. The folder is inside ``NUMBA_CACHE_DIR`` where that is set, else beside the sources.
    """
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join((here / name).read_bytes() for name in _SOURCES)).hexdigest()[:16]
    return str(Path(_CONFIG.CACHE_DIR or here / "__pycache__") / f"row-kernel-{digest}")


_SOURCES = ("tiles.py", "vector_ops.py", "kernels.py", "vertical_kernel.py")
_CONFIG.CACHE_DIR = _cache_directory()  # before any function here is defined

WIDTH = 32  # outputs per tile: 4 vectors of 8 floats


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``), for three floats of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


fma: Callable[[Any, Any, Any], Any] = cast(Any, _fma)  # typed for the callers' type checking


def _tile_source(rows: int) -> str:
    """``tile(x, x_at, inputs, weight, start, out, outputs, first)``: rows ``first ..
    first + rows - 1`` of ``affine_rows``, every group of ``WIDTH`` outputs."""
    lines = [
        "def tile(x, x_at, inputs, weight, start, out, outputs, first):",
        f"    for o0 in range(0, outputs, {WIDTH}):",
    ]
    for i in range(rows):
        lines.append(f"        start_{i} = start[first + {i}, o0 : o0 + {WIDTH}]")
        lines.append(f"        x_{i} = x[first + {i}, x_at : x_at + inputs]")
        lines += [f"        a_{i}_{j} = start_{i}[{j}]" for j in range(WIDTH)]
    lines.append("        for k in range(inputs):")
    lines.append(f"            w = weight[k, o0 : o0 + {WIDTH}]")
    lines += [f"            w_{j} = w[{j}]" for j in range(WIDTH)]
    for i in range(rows):
        lines.append(f"            xk = x_{i}[k]")
        lines += [f"            a_{i}_{j} = fma(xk, w_{j}, a_{i}_{j})" for j in range(WIDTH)]
    for i in range(rows):
        lines.append(f"        out_{i} = out[first + {i}, o0 : o0 + {WIDTH}]")
        lines += [f"        out_{i}[{j}] = a_{i}_{j}" for j in range(WIDTH)]
    return "\n".join(lines)


def _compiled_tile(rows: int) -> Any:
    namespace: dict[str, object] = {"np": np, "fma": fma}
    exec(compile(_tile_source(rows), f"<tile {rows}x{WIDTH}>", "exec"), namespace)
    return njit(nogil=True)(namespace["tile"])


tile_1 = _compiled_tile(1)
tile_4 = _compiled_tile(4)
