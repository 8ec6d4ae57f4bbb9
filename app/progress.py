"""A streamed request's view of its running job: its own rows as they are drawn, and a way out.

The sampler calls a job's row hook on the worker thread after every row. ``Progress`` hands a
copy of one request's images to that request's event loop (``rows``, an ``asyncio.Queue``),
and carries the request's ``cancelled`` flag the other way. In a merged batch, ``BatchRows``
is the hook: it cuts every row's images into the merged requests' parts, gives each streamed
request its own, and tells the sampler to drop the images of requests whose client has gone.
When no request of a job is left, the hook raises ``Cancelled`` and the job stops.
"""

from __future__ import annotations

import asyncio
import contextlib

import torch


class Cancelled(Exception):
    """Every request of the running job has gone: it stops at the next row."""


class Progress:
    """One streamed request: ``rows`` receives ``(rows done, images so far)``, then None at the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.rows: asyncio.Queue[tuple[int, torch.Tensor] | None] = asyncio.Queue()
        self.cancelled = False  # set on the event loop, read on the worker thread

    def put(self, rows: int, images: torch.Tensor) -> None:
        """From the worker thread: a copy of this request's images after ``rows`` rows."""
        copy = images.clone()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens any more
            self.loop.call_soon_threadsafe(self.rows.put_nowait, (rows, copy))

    def __call__(self, rows: int, images: torch.Tensor) -> None:
        """The row hook of a job that runs alone: pass the rows on, or stop if the client left."""
        if self.cancelled:
            raise Cancelled
        self.put(rows, images)


class BatchRows:
    """The row hook of a merged batch: ``parts`` lists each merged request's image count and its
    ``Progress`` (None: a plain request), in batch order.

    ``shrinks``: the sampler drops the rows of a request whose client has gone (``cached_sample``
    does; particle samplers keep every row to the end, and only stop once all have gone).
    """

    def __init__(self, parts: list[tuple[int, Progress | None]], shrinks: bool = True):
        self.parts = parts
        self.present = [True] * len(parts)
        self.shrinks = shrinks

    @property
    def streamed(self) -> bool:
        return any(progress is not None for _, progress in self.parts)

    def sizes(self) -> list[int]:
        """Each part's images in the result: 0 for a part dropped on the way."""
        return [count if present else 0 for (count, _), present in zip(self.parts, self.present, strict=True)]

    def __call__(self, rows: int, images: torch.Tensor) -> torch.Tensor | None:
        """``images`` holds the present parts (all parts unless ``shrinks``), in order -> the
        batch rows to keep (None: all)."""
        keep: list[int] = []
        start = 0
        dropped = False
        for p, (count, progress) in enumerate(self.parts):
            if not self.present[p]:
                start += 0 if self.shrinks else count
                continue
            if progress is not None and progress.cancelled:
                self.present[p] = False
                dropped = True
            else:
                keep.extend(range(start, start + count))
                if progress is not None:
                    progress.put(rows, images[start : start + count])
            start += count
        if not keep:
            raise Cancelled
        return torch.tensor(keep) if dropped and self.shrinks else None
