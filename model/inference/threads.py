"""Torch's CPU threads for a stretch of work: ``one_thread``.

Some work must run its torch ops on one thread: the codec, whose probabilities must not depend
on how a matrix library splits a sum between threads (``model.codec.threads``), and the
particle samplers, whose own ops are small (rows of 256 levels) while the compiled loops run
the network on threads of their own. There a multi-threaded op gains nothing and costs much:
after each one, torch's OpenMP workers spin for a while on the cores the loops need
(``complete`` of 16 results of 8 particles took 11.9 s with two torch threads, 7.5 s with one,
on 2 cores).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()  # reentrant: a particle loop may call the codec, say, from a hook


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside, restoring the caller's setting after.

    At batch 1 that costs next to nothing, and on a busy machine a multi-threaded op on tiny
    tensors can be many times slower than one thread. The lock keeps two callers from
    restoring each other's setting midway (a new thread starts with the latest one set).
    """
    with _LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
