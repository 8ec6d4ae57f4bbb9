"""How the codec uses the CPU's threads: one torch thread for whatever decides a coded symbol.

Encoder and decoder must compute bit-identical probabilities: the range coder rounds them to
24-bit integers, and a logit one ulp off can move one of those, after which the decoder reads
other pixels. The same ops on the same shapes give the same bits on one thread, but with
several a matrix or convolution library may split a sum differently depending on the thread
count (here 1, 2 and 4 threads happened to agree; nothing promises it). So every op whose
result feeds the coded probabilities, or the choice of a label, runs on one torch thread
(``model.inference.threads.one_thread``).

That does not have to mean one core: work made of independent passes (ranking the labels,
``model.codec.labels``; the encoder's pixel loops, one per batch of images) runs
``side_by_side`` on several Python threads of one torch thread each, so still the same bits.
Two pixel loops side by side took 1.5-1.8x less time than one after the other on 2 cores.
The decoder cannot do that: it reads one stream, batch after batch. It runs on the caller's
threads, and the container's checksum catches other bits (``range_coder.decompress`` then
decodes again on one thread).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


def _single_threaded() -> None:
    # A thread's own setting: torch's OpenMP and MKL thread counts are per calling thread.
    torch.set_num_threads(1)


def side_by_side(tasks: Sequence[Callable[[], T]], workers: int) -> Iterator[T]:
    """The tasks' results in order, computed on up to ``workers`` threads of one torch thread each.

    At most ``workers + 1`` results wait at a time, so memory stays bounded however many
    tasks there are. With one worker (or one task) everything runs on the calling thread,
    which must already be inside ``one_thread``.
    """
    if workers <= 1 or len(tasks) <= 1:
        yield from (task() for task in tasks)
        return
    with ThreadPoolExecutor(workers, "codec", initializer=_single_threaded) as pool:
        pending: deque[Future[T]] = deque()
        todo = iter(tasks)
        for task in todo:
            pending.append(pool.submit(task))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
