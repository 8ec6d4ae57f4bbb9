"""The inference worker: one thread runs every model's jobs; requests queue up and get merged.

Routes ``await served.submit(job)`` with a job from ``app.jobs`` and the loaded model it runs
on (``app.models.served``); the worker thread takes the oldest job, and for kinds that can be
merged (generation, likelihood: a ``merge_key``) waits up to ``max_batch_delay_ms`` for more
compatible jobs of the same model version, up to ``max_batch_size`` images, then runs them as
one batch and splits the results. One thread for all models keeps them from fighting over the
cores, and one queue shares its limit fairly between them. Seeds are per image, so a request's images
do not depend on what it was batched with. The queue is bounded in images: past
``max_queue`` a request is refused at once with 503 and ``Retry-After``. A job whose client
has gone away, or that waited longer than ``request_timeout_s``, is dropped without costing
compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from starlette.requests import Request

from app.durable.context import Deferred, deferring, replaying
from app.errors import ClientError
from app.jobs import Job
from app.metrics import Metrics
from app.security.access import Client, current_client
from app.security.quota import QueuedPerClient, RateLimit
from app.settings import Settings

if TYPE_CHECKING:
    from app.models.served import ServedModel

R = TypeVar("R")

# Below this many images a batch of torch steps (a few hundred ops on tiny tensors each) runs
# on one torch thread: a second intra-op thread next to the event loop made /generate n=1
# 1.8x slower over HTTP on 2 cores. Compiled loops (``Job.compiled``) split a batch between
# threads of their own and get every thread: 4 images took 0.21 s on 2, 0.33 s on one.
SMALL_BATCH_IMAGES = 8


@dataclass(eq=False)  # compared by identity: a queue search must never compare tensors
class Ticket:
    """A queued job, the model version it runs on, and the event loop and future of the
    request that waits for it."""

    job: Job[Any]
    served: ServedModel
    client: Client
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    released: bool = False  # no longer counted as the model's work
    # Counted against its client's limits; a replayed durable job was, when it was accepted.
    counted: bool = field(default_factory=lambda: replaying.get() is None)

    @property
    def images(self) -> int:
        return self.job.images

    def merges_with(self, first: Ticket) -> bool:
        key = first.job.merge_key()
        return (
            key is not None
            and self.served is first.served
            and type(self.job) is type(first.job)
            and self.job.merge_key() == key
        )


class InferenceWorker:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.queue: deque[Ticket] = deque()
        self.pending_images = 0
        self.per_client = QueuedPerClient(settings.max_queued_per_client, metrics)
        self.rate = RateLimit(settings.rate_images_per_min, settings.rate_limit_storage, metrics)
        self.condition = threading.Condition()
        self.running = False
        self.thread = threading.Thread(target=self._loop, name="inference-worker", daemon=True)
        self.after_batch: Callable[[], None] | None = None  # the registry unloads idle models here

    # --- the event-loop side ----------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self.thread.start()

    def stop(self) -> None:
        with self.condition:
            self.running = False
            left = list(self.queue)
            self.queue.clear()
            self.pending_images = 0
            self.per_client.queued.clear()
            self.condition.notify_all()
        for ticket in left:
            self._release(ticket)
            self._resolve(ticket, None, ClientError(503, "the server is shutting down", {"Retry-After": "5"}))
        self.thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self.running and self.thread.is_alive()

    async def submit(self, job: Job[R], served: ServedModel, request: Request | None = None) -> R:
        """Queue a job on ``served`` and wait for its result (503 when overloaded or too slow)."""
        return await self.wait(self.enqueue(job, served), request)

    def enqueue(self, job: Job[Any], served: ServedModel) -> Ticket:
        """Queue a job at once, or refuse it (422 too big, 503 overloaded, 429 past the client's
        limits): ``wait`` for it next. The client is the request's (``current_client``)."""
        loop = asyncio.get_running_loop()
        images = job.images
        ticket = Ticket(job, served, current_client.get(), loop, loop.create_future())
        with self.condition:
            if not self.running or not self.thread.is_alive():
                raise ClientError(503, "the inference worker is not running", headers={"Retry-After": "5"})
            if images > self.settings.max_queue:
                raise ClientError(
                    422,
                    f"this request needs {images} images of work, more than the server's queue "
                    f"holds ({self.settings.max_queue}); ask for fewer",
                )
            if self.pending_images + images > self.settings.max_queue:
                self.metrics.rejections.labels(reason="queue_full").inc()
                raise ClientError(
                    503,
                    f"the server is busy ({self.pending_images} images queued, limit "
                    f"{self.settings.max_queue}); retry shortly",
                    headers={"Retry-After": "1"},
                )
            if ticket.counted:
                self.per_client.join(ticket.client, images)
                try:
                    self.rate.charge(ticket.client, images)
                except BaseException:
                    self.per_client.leave(ticket.client, images)
                    raise
            if deferring.get() is not None:  # Prefer: respond-async: the work becomes a stored job
                if ticket.counted:
                    self.per_client.leave(ticket.client, images)
                raise Deferred(images)
            self.queue.append(ticket)
            served.hold(1)
            self.pending_images += images
            self.metrics.queue_depth.set(self.pending_images)
            self.condition.notify_all()
        return ticket

    async def wait(self, ticket: Ticket, request: Request | None = None) -> Any:
        """The queued job's result; leaving early (timeout, client gone, cancelled) drops it."""
        waiters: list[asyncio.Future[Any]] = [ticket.future]
        watcher = asyncio.ensure_future(self._watch_disconnect(request)) if request else None
        if watcher is not None:
            waiters.append(watcher)
        done: set[asyncio.Future[Any]] = set()
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if watcher is not None:
                watcher.cancel()
            if ticket.future not in done:  # timed out, client gone, or this task was cancelled
                self._cancel(ticket)
                ticket.future.cancel()  # nobody will read what the worker makes of it
        if ticket.future in done:
            return ticket.future.result()
        if watcher is not None and watcher in done:
            self.metrics.rejections.labels(reason="client_gone").inc()
            raise ClientError(499, "the client closed the connection")
        self.metrics.rejections.labels(reason="timeout").inc()
        raise ClientError(
            503,
            f"the request waited longer than {self.settings.request_timeout_s:g} s; retry later",
            headers={"Retry-After": "5"},
        )

    async def _watch_disconnect(self, request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.1)

    def _cancel(self, ticket: Ticket) -> None:
        with self.condition:
            ticket.cancelled = True
            if ticket in self.queue:
                self.queue.remove(ticket)
                self.pending_images -= ticket.images
                if ticket.counted:
                    self.per_client.leave(ticket.client, ticket.images)
                self.metrics.queue_depth.set(self.pending_images)
                self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        """The ticket no longer counts as its model's work (once, however it ended)."""
        if not ticket.released:
            ticket.released = True
            ticket.served.hold(-1)

    # --- the worker thread ------------------------------------------------------------------
    def _take(self, ticket: Ticket) -> None:
        self.queue.remove(ticket)
        self.pending_images -= ticket.images
        if ticket.counted:
            self.per_client.leave(ticket.client, ticket.images)
        self.metrics.queue_depth.set(self.pending_images)

    def _next_batch(self) -> list[Ticket] | None:
        with self.condition:
            while self.running and not self.queue:
                self.condition.wait()
            if not self.running:
                return None
            first = self.queue[0]
            self._take(first)
            batch = [first]
            if not self.settings.batching or first.job.merge_key() is None:
                return batch
            total = first.images
            deadline = time.monotonic() + self.settings.max_batch_delay_ms / 1000
            while total < self.settings.max_batch_size:
                for ticket in list(self.queue):
                    if ticket.merges_with(first):
                        if total + ticket.images > self.settings.max_batch_size:
                            break
                        self._take(ticket)
                        batch.append(ticket)
                        total += ticket.images
                remaining = deadline - time.monotonic()
                if total >= self.settings.max_batch_size or remaining <= 0 or not self.running:
                    break
                self.condition.wait(timeout=remaining)
            return batch

    def _loop(self) -> None:
        threads = self.settings.torch_threads or torch.get_num_threads()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            images = sum(ticket.images for ticket in batch)
            small = images < SMALL_BATCH_IMAGES and not batch[0].job.compiled(batch[0].served)
            torch.set_num_threads(1 if small else threads)
            try:
                self._run_batch(batch)
            finally:
                for ticket in batch:
                    self._release(ticket)
                if self.after_batch is not None:
                    self.after_batch()

    def _run_batch(self, batch: list[Ticket]) -> None:
        live = [ticket for ticket in batch if not ticket.cancelled and not ticket.future.done()]
        if live:
            name = batch[0].served.name
            self.metrics.batch_size.labels(model=name).observe(sum(ticket.images for ticket in live))
            try:
                results = self._run(live)
            except ValueError as exc:
                error: Exception = ClientError(422, str(exc))
                for ticket in live:
                    self._resolve(ticket, None, error)
            except Exception as exc:  # a bug: let the route's error handling report it
                for ticket in live:
                    self._resolve(ticket, None, exc)
            else:
                for ticket, result in zip(live, results, strict=True):
                    self._resolve(ticket, result, None)

    def _resolve(self, ticket: Ticket, result: Any, error: Exception | None) -> None:
        if ticket.loop.is_closed():
            return

        def settle() -> None:
            if ticket.future.done():
                return
            if error is not None:
                ticket.future.set_exception(error)
            else:
                ticket.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            ticket.loop.call_soon_threadsafe(settle)

    @torch.no_grad()
    def _run(self, tickets: list[Ticket]) -> list[Any]:
        """Merge the batch's jobs into one, run it, and split its result per job."""
        jobs = [ticket.job for ticket in tickets]
        merged = type(jobs[0]).merge(jobs)
        result = merged.run(tickets[0].served, self.metrics)
        return merged.split(result, [job.images for job in jobs])
