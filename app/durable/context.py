"""What a request knows of durable jobs while it runs, kept in context variables (so the route
code in between needs no new arguments):

- ``deferring``: this request asked ``Prefer: respond-async``. The route checks it exactly as
  a synchronous one; where it would queue its work (``InferenceWorker.enqueue``), ``Deferred``
  is raised instead, and the app answers 202 with the stored job's id.
- ``replaying``: this request is a stored job being run (``app.durable.runner``). Its random
  seed is the one stored when it was accepted, so a job run twice (after a crash) makes the
  same bytes; its rows are reported to the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.progress import Progress

if TYPE_CHECKING:
    from app.durable.records import StoredRequest


class Deferred(Exception):
    """Raised where a deferred request's work would have been queued."""

    def __init__(self, images: int) -> None:
        super().__init__(f"{images} images of work deferred to a job")
        self.images = images


@dataclass
class Deferral:
    """A ``Prefer: respond-async`` request on its way to becoming a job."""

    request: StoredRequest
    seed: int | None = None  # the random base seed the route chose, if it chose one
    callback_url: str | None = None


@dataclass
class Replay:
    """A stored job being run: its id, its stored seed, and its rows so far."""

    job_id: str
    seed: int | None
    rows: int = 0
    of_rows: int = 0
    progress: list[Progress] = field(default_factory=list)  # what to stop when it is cancelled


deferring: ContextVar[Deferral | None] = ContextVar("deferring", default=None)
replaying: ContextVar[Replay | None] = ContextVar("replaying", default=None)


def choose_seed(random_base: int) -> int:
    """The base seed of a request that gave none: a replayed job's stored one, else
    ``random_base`` (recorded when the request is being deferred)."""
    replay = replaying.get()
    if replay is not None and replay.seed is not None:
        return replay.seed
    deferral = deferring.get()
    if deferral is not None:
        deferral.seed = random_base
    return random_base


@contextmanager
def rows_reported(job: object, of_rows: int) -> Iterator[None]:
    """While a replayed job's work runs, count its rows (``Replay.rows``) from a row hook, as
    a streamed request would; a job kind without a row hook runs as it is."""
    replay = replaying.get()
    if replay is None or getattr(job, "progress", "absent") is not None:
        yield
        return
    progress = Progress(asyncio.get_running_loop())
    job.progress = progress  # type: ignore[attr-defined]
    replay.progress.append(progress)
    replay.of_rows = of_rows

    async def count() -> None:
        while (item := await progress.rows.get()) is not None:
            replay.rows = item[0]

    counting = asyncio.ensure_future(count())
    try:
        yield
    finally:
        counting.cancel()
