"""Runs stored jobs: claims the oldest queued one, replays its request in process (so its
result is exactly the synchronous answer), stores the answer, and tells its callback.

Several replays run at once, so that the inference worker can batch them as it batches
clients' requests; a job is claimed only while the worker's queue has room. Every half second
the runner reports each running job's rows (its heartbeat) and stops those asked to cancel.
Jobs of a process that died (silent for ``PIXELCNN_JOB_LEASE_S``) are queued again and, with
their stored seeds, make the same bytes; a process that stops gracefully hands its running
jobs back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp

from app.durable.callbacks import notify
from app.durable.context import Replay, replaying
from app.durable.records import JobRecord, StoredResponse
from app.durable.replay import call_app
from app.durable.store import JobStore
from app.durable.views import job_view, parameters
from app.security.access import Client
from app.settings import Settings
from app.worker import InferenceWorker

log = logging.getLogger("app")
TICK_S = 0.5  # how often running jobs report their rows and hear of cancellation
SWEEP_S = 5.0  # how often stale jobs are queued again and expired ones removed
BUSY_WAIT_S = (0.5, 5.0)  # a job that finds the worker's queue full waits, then tries again


@dataclass
class Running:
    task: asyncio.Task[None]
    replay: Replay
    lost: bool = False  # another process holds the job now: stop without a word


@dataclass
class JobRunner:
    app: ASGIApp
    store: JobStore
    settings: Settings
    worker: InferenceWorker
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    running: dict[str, Running] = field(default_factory=dict)
    stopping: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    loop_task: asyncio.Task[None] | None = None
    callbacks: set[asyncio.Task[bool]] = field(default_factory=set)  # kept until they end
    event_streams: int = 0  # /jobs/{id}/events answers open now

    def wake(self) -> None:
        """A job was stored: look for work now rather than at the next tick."""
        self.wakeup.set()

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self.store.requeue_stale, self.settings.job_lease_s, time.time())
        if recovered:
            log.info("jobs: %d job(s) of a stopped process queued again", recovered)
        self.loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self.stopping = True
        tasks = [r.task for r in self.running.values()]
        if self.loop_task is not None:
            tasks.append(self.loop_task)
        for task in [*tasks, *self.callbacks]:  # a callback still retrying is given up
            task.cancel()
        await asyncio.gather(*tasks, *self.callbacks, return_exceptions=True)
        handed_back = await asyncio.to_thread(self.store.requeue_owner, self.owner)
        if handed_back:
            log.info("jobs: %d running job(s) handed back to the queue", handed_back)

    async def _loop(self) -> None:
        next_sweep = 0.0
        while True:
            try:
                now = time.time()
                await self._tick(now)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_S
                    await asyncio.to_thread(self.store.requeue_stale, self.settings.job_lease_s, now)
                    await asyncio.to_thread(self.store.expire, self.settings.job_ttl_s, now)
                while len(self.running) < self.settings.job_concurrency and self._room():
                    record = await asyncio.to_thread(self.store.claim, self.owner, time.time())
                    if record is None:
                        break
                    self.running[record.id] = Running(
                        asyncio.create_task(self._run(record)), Replay(record.id, record.seed)
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is unreachable for a moment: try again next tick
                log.exception("jobs: the runner's tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), TICK_S)
            self.wakeup.clear()

    def _room(self) -> bool:
        return self.worker.pending_images < max(1, self.settings.max_queue // 2)

    async def _tick(self, now: float) -> None:
        """Report rows (the heartbeat) and stop what was cancelled."""
        for job_id, running in list(self.running.items()):
            replay = running.replay
            keep = await asyncio.to_thread(
                self.store.progress, job_id, replay.rows, replay.of_rows, now, self.owner
            )
            if not keep and not running.task.done():
                record = await asyncio.to_thread(self.store.get, job_id)
                running.lost = record is None or not (record.cancel_requested or record.status == "cancelled")
                for progress in replay.progress:
                    progress.cancelled = True  # a running batch drops it at the next row
                running.task.cancel()

    async def _run(self, record: JobRecord) -> None:
        running = self.running[record.id]
        replaying.set(running.replay)  # this task's own context
        client = Client(record.client, f"job:{record.id}")
        try:
            response = await self._replay(record, client)
        except asyncio.CancelledError:
            if self.stopping or running.lost:
                raise  # handed back to the queue by stop(), or held by another process now
            await self._finish(record.id, "cancelled", None, "cancelled")
            return
        except Exception as exc:  # a bug the app answered with a 500 and re-raised: no rerun
            log.exception("jobs: job %s failed", record.id)
            await self._finish(record.id, "failed", None, f"internal error: {type(exc).__name__}")
            return
        finally:
            self.running.pop(record.id, None)
        if self.stopping:
            return  # stop() hands it back to the queue: it runs again, with the same seed
        failed = response.status >= 400
        if not failed:  # its last rows may have come after the last tick
            rows = running.replay.of_rows
            await asyncio.to_thread(self.store.progress, record.id, rows, rows, time.time(), self.owner)
        await self._finish(
            record.id, "failed" if failed else "done", response, _detail(response) if failed else None
        )

    async def _replay(self, record: JobRecord, client: Client) -> StoredResponse:
        """The job's answer; while the worker's queue is full (503 with Retry-After), it waits
        and tries again (a busy server is no reason for an accepted job to fail)."""
        wait_s = BUSY_WAIT_S[0]
        while True:
            response = await call_app(self.app, record.request, client)
            busy = response.status == 503 and any(k.lower() == "retry-after" for k, _ in response.headers)
            if not busy or self.stopping:
                return response
            await asyncio.sleep(wait_s)
            wait_s = min(2 * wait_s, BUSY_WAIT_S[1])

    async def _finish(
        self, job_id: str, status: str, response: StoredResponse | None, error: str | None
    ) -> None:
        record = await asyncio.to_thread(
            self.store.finish, job_id, status, time.time(), response, error, self.owner
        )
        if record is not None:
            self.announce(record)

    def announce(self, record: JobRecord) -> None:
        """Tell a finished job's callback_url, if it has one (in the background, with retries)."""
        if record.callback_url:
            task = asyncio.create_task(self._call_back(record, record.callback_url))
            self.callbacks.add(task)
            task.add_done_callback(self.callbacks.discard)

    async def _call_back(self, record: JobRecord, url: str) -> bool:
        view = job_view(record, None, await parameters(record.request)).model_dump()
        return await notify(url, view, self.settings.callback_secret)


def _detail(response: StoredResponse) -> str:
    """A failed answer's message (its JSON ``detail``), for the job's ``error``."""
    try:
        return str(json.loads(response.body)["detail"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status}"
