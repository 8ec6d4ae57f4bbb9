"""The inference worker on its own: merging, byte-identical batches, backpressure, timeouts.

A ``CallJob`` that blocks on an event holds the worker busy, so that what queues up behind it
is under the test's control, without timing races.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import torch
from starlette.requests import Request

from app import jobs
from app.errors import ClientError
from app.jobs import CallJob, GenerateJob
from app.metrics import Metrics
from app.models.served import ServedModel, describe
from app.particle_jobs import CompleteJob, UpscaleJob
from app.settings import Settings
from app.worker import SMALL_BATCH_IMAGES, InferenceWorker
from model.inference.cached import cached_sample
from model.inference.completion import complete
from model.inference.sampling import per_image_noise
from model.inference.superres import upscale
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model


@pytest.fixture(scope="module")
def model() -> PixelCNN:
    return random_model("gated", 10, size=8, channels=8, layers=2, seed=6)


class OneModelWorker(InferenceWorker):
    """The worker serving one model, as these tests drive it: jobs are submitted without it."""

    def __init__(self, model: PixelCNN, settings: Settings, metrics: Metrics) -> None:
        super().__init__(settings, metrics)
        info = describe("tiny", model.config, {}, "in-memory", "")
        self.served = ServedModel("tiny", model, info, self)

    async def submit(self, job: Any, request: Any = None) -> Any:  # type: ignore[override]
        return await super().submit(job, self.served, request)


@pytest.fixture
def started(model: PixelCNN, request: pytest.FixtureRequest) -> Iterator[OneModelWorker]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    settings = Settings(**{"max_batch_delay_ms": 0, "request_timeout_s": 30, **overrides})
    worker = OneModelWorker(model, settings, Metrics())
    worker.start()
    yield worker
    worker.stop()


def payload(seeds: list[int], label: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(seeds)
    return per_image_noise(seeds, 64), torch.full((n,), label), torch.ones(n, dtype=torch.float64)


def generate_job(seeds: list[int]) -> GenerateJob:
    return GenerateJob(*payload(seeds))


async def hold(worker: OneModelWorker) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Occupy the worker with a job that returns once the event is set."""
    release, busy = threading.Event(), threading.Event()

    def block(model: PixelCNN) -> str:
        busy.set()
        release.wait(timeout=30)
        return "released"

    task = asyncio.ensure_future(worker.submit(CallJob(block)))
    for _ in range(1000):
        if busy.is_set():
            return release, task
        await asyncio.sleep(0.01)
    raise AssertionError("the worker did not pick up the blocking job within 10 s")


def observed_batches(worker: InferenceWorker) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the batch size histogram's buckets."""
    samples = worker.metrics.registry.collect()
    return [
        (float(s.labels["le"]), s.value)
        for metric in samples
        if metric.name == "pixelcnn_batch_images"
        for s in metric.samples
        if s.name.endswith("_bucket")
    ]


def test_queued_requests_merge_into_one_batch_with_the_same_bytes(
    started: OneModelWorker, model: PixelCNN
) -> None:
    async def scenario() -> list[Any]:
        release, blocker = await hold(started)
        jobs = [asyncio.ensure_future(started.submit(generate_job([s]))) for s in range(5)]
        jobs.append(asyncio.ensure_future(started.submit(generate_job([7, 8, 9]))))
        await asyncio.sleep(0.05)
        assert started.pending_images == 8
        release.set()
        assert await blocker == "released"
        return await asyncio.gather(*jobs)

    results = asyncio.run(scenario())
    alone = [cached_sample(model, *payload([s])) for s in range(5)] + [
        cached_sample(model, *payload([7, 8, 9]))
    ]
    for (images, bits), (images_alone, bits_alone) in zip(results, alone, strict=True):
        assert torch.equal(images, images_alone)
        # The reported cost may differ in float32 rounding: products sum in another order.
        torch.testing.assert_close(bits, bits_alone, rtol=1e-6, atol=0)
    # The blocker was a batch of 1; the six generation jobs went as one batch of 8 images.
    assert dict(observed_batches(started))[8.0] - dict(observed_batches(started))[4.0] == 1


@pytest.mark.parametrize("started", [{"max_queue": 6}], indirect=True)
def test_past_the_queue_limit_requests_get_503_at_once(started: OneModelWorker) -> None:
    async def scenario() -> None:
        release, blocker = await hold(started)
        first = asyncio.ensure_future(started.submit(generate_job([0, 1, 2, 3])))
        await asyncio.sleep(0.05)
        with pytest.raises(ClientError) as refused:
            await asyncio.wait_for(started.submit(generate_job([4, 5, 6])), timeout=1)
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
        assert "4 images queued, limit 6" in refused.value.detail
        with pytest.raises(ClientError) as too_big:
            await started.submit(generate_job(list(range(7))))
        assert too_big.value.status == 422 and "more than the server's queue" in too_big.value.detail
        release.set()
        await blocker
        images, _ = await first
        assert images.shape == (4, 1, 8, 8)

    asyncio.run(scenario())


class GoneClient:
    """Enough of a Starlette request for the worker: a client that has disconnected."""

    async def is_disconnected(self) -> bool:
        return True


@pytest.mark.parametrize("started", [{"request_timeout_s": 1.0}], indirect=True)
def test_timed_out_and_abandoned_jobs_leave_the_queue_and_cost_no_compute(started: OneModelWorker) -> None:
    async def scenario() -> None:
        release, blocker = await hold(started)
        waiting = asyncio.ensure_future(started.submit(generate_job([0, 1])))
        await asyncio.sleep(0.05)
        # The client of a job queued behind `waiting` leaves: dropping it searches the queue
        # past `waiting`, so jobs must compare by identity (comparing tensors would raise).
        with pytest.raises(ClientError) as left:
            await started.submit(generate_job([2, 3]), cast(Request, GoneClient()))
        assert left.value.status == 499
        assert started.pending_images == 2
        with pytest.raises(ClientError) as late:
            await waiting
        assert late.value.status == 503 and "waited longer than 1 s" in late.value.detail
        assert started.pending_images == 0 and not started.queue
        with pytest.raises(ClientError):  # the blocker waited too long as well
            await blocker
        release.set()
        started.settings.request_timeout_s = 60  # the check below must not race the clock
        images, _ = await started.submit(generate_job([9]))
        assert images.shape == (1, 1, 8, 8)

    asyncio.run(scenario())
    # Only the last job ran: the dropped ones were never computed.
    assert started.metrics.images_generated.labels(model="tiny")._value.get() == 1
    rejections = {
        sample.labels["reason"]: sample.value
        for metric in started.metrics.rejections.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert rejections == {"client_gone": 1, "timeout": 2}  # the abandoned job; `waiting` and the blocker


def test_particle_jobs_of_different_images_merge_and_each_equals_its_request_alone(
    started: OneModelWorker, model: PixelCNN
) -> None:
    """Completions and upscales with the same particle count (and factor) run as one batch of
    all their particles; each request's results are what it gets alone, whatever its image,
    mask, label or size."""
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, model.config.levels, (3, 1, 8, 8), generator=generator)
    masks = [torch.zeros(8, 8, dtype=torch.bool) for _ in range(3)]
    masks[0][4:] = True
    masks[1][:, 2:6] = True
    masks[2][1:3, 1:7] = True
    shared = {"temperature": 1.0, "particles": 4}
    completions = [
        CompleteJob(image=images[0], mask=masks[0], n=2, label=None, seeds=[1, 2], **shared),
        CompleteJob(image=images[1], mask=masks[1], n=1, label=5, seeds=[3], **shared),
        CompleteJob(image=images[2], mask=masks[2], n=1, label=None, seeds=[4], **shared),
    ]
    smalls = torch.randint(0, model.config.levels, (2, 1, 4, 4), generator=generator)
    upscales = [
        UpscaleJob(small=smalls[0], factor=2, n=1, label=None, seeds=[5], temperature=1.0, particles=4),
        UpscaleJob(small=smalls[1], factor=2, n=2, label=7, seeds=[6, 7], temperature=1.0, particles=4),
    ]
    apart = CompleteJob(image=images[0], mask=masks[0], n=1, label=1, seeds=[8], temperature=1.0, particles=2)

    async def scenario() -> list[Any]:
        release, blocker = await hold(started)
        jobs = [asyncio.ensure_future(started.submit(job)) for job in [*completions, *upscales, apart]]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        return await asyncio.gather(*jobs)

    results = asyncio.run(scenario())
    alone = [
        complete(
            model, job.image, job.mask, job.n, labels=job.label, seeds=job.seeds, particles=job.particles
        )
        for job in [*completions, apart]
    ]
    alone[3:3] = [
        upscale(model, job.small, 2, job.n, labels=job.label, seeds=job.seeds, particles=job.particles)
        for job in upscales
    ]
    for (got, bits, labels), (want, want_bits, want_labels) in zip(results, alone, strict=True):
        assert torch.equal(got, want)
        assert labels is not None and want_labels is not None and torch.equal(labels, want_labels)
        torch.testing.assert_close(bits, want_bits, rtol=1e-5, atol=0)
    for (got, _, _), job in zip(results[:3], completions, strict=True):  # known pixels kept
        assert torch.equal(got[:, :, ~job.mask], job.image.to(torch.uint8)[:, ~job.mask].expand(job.n, 1, -1))
    # After the blocker: the completions as one batch of 16 particles, the upscales as one of
    # 12, and the completion with another particle count alone (2).
    batches = dict(observed_batches(started))
    assert batches[16.0] - batches[8.0] == 2 and batches[2.0] - batches[1.0] == 1


@pytest.mark.parametrize("started", [{"torch_threads": 2}], indirect=True)
def test_small_batches_run_on_one_torch_thread_and_larger_ones_on_the_setting(
    started: OneModelWorker,
) -> None:
    def threads_seen(model: PixelCNN) -> int:
        return torch.get_num_threads()

    async def scenario() -> list[int]:
        return [
            await started.submit(CallJob(threads_seen, size=size))
            for size in (1, SMALL_BATCH_IMAGES - 1, SMALL_BATCH_IMAGES, 16)
        ]

    assert asyncio.run(scenario()) == [1, 1, 2, 2]


@pytest.mark.parametrize("started", [{"torch_threads": 2}], indirect=True)
def test_one_image_of_the_compiled_loops_gets_every_thread(
    started: OneModelWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated network's images are drawn by the compiled row loops, which split a batch
    between threads of their own: even one image's job runs with the thread setting."""
    seen: list[int] = []
    sample = jobs.cached_sample

    def watched(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(torch.get_num_threads())
        return sample(*args, **kwargs)

    monkeypatch.setattr(jobs, "cached_sample", watched)
    images, _ = asyncio.run(started.submit(generate_job([5])))
    assert seen == [2] and images.shape == (1, 1, 8, 8)
