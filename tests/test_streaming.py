"""Streamed generation and completion against a real server: server-sent progress events with
partial images, the same result as a plain request, and cancellation by closing the stream."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

import app.jobs
import app.particle_jobs
from app.jobs import CallJob
from app.main import create_app
from app.settings import Settings
from tests.conftest import random_model
from tests.server import running_server

STREAM = {"Accept": "text/event-stream"}
SIZE = 10  # the test model's image side: 10 rows


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FastAPI, httpx.Client]]:
    model = random_model("gated", 10, size=SIZE, levels=16, seed=2)
    settings = Settings(max_batch_delay_ms=5, max_queue=8, torch_threads=1)
    service = create_app(settings, models={"model": model})
    with running_server(service) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield service, client


@pytest.fixture
def client(served: tuple[FastAPI, httpx.Client]) -> httpx.Client:
    return served[1]


def events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event name, raw data) of each server-sent event, as they arrive."""
    name, data = "", list[str]()
    for line in response.iter_lines():
        if line == "":
            if name:
                yield name, "\n".join(data)
            name, data = "", list[str]()
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


def metric(client: httpx.Client, series: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def pixels(png_base64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))))


def same_images(got: dict[str, Any], alone: dict[str, Any]) -> None:
    """Bit-identical PNGs, seeds and labels; bits/dim to float rounding (a batch's float32
    arithmetic differs in the last digits with its size)."""
    for a, b in zip(got["images"], alone["images"], strict=True):
        assert (a["png_base64"], a["seed"], a["label"]) == (b["png_base64"], b["seed"], b["label"])
        assert a["bits_per_dim"] == pytest.approx(b["bits_per_dim"], rel=1e-6)


CANCELLED = 'pixelcnn_rejections_total{reason="cancelled"}'
GENERATED = 'pixelcnn_images_generated_total{model="model"}'
BATCHES = 'pixelcnn_batch_images_count{model="model"}'
BATCH_IMAGES = 'pixelcnn_batch_images_sum{model="model"}'
QUEUED = "pixelcnn_queue_images"


def hold_worker(service: FastAPI) -> Callable[[], None]:
    """Keep the worker busy (requests queue meanwhile) until the returned function is called."""
    started, release = threading.Event(), threading.Event()

    def hold(model: Any) -> None:
        started.set()
        release.wait(60)

    job = CallJob(hold)
    thread = threading.Thread(
        target=asyncio.run, args=(service.state.service.registry.get(None).submit(job),)
    )
    thread.start()
    assert started.wait(30)

    def let_go() -> None:
        release.set()
        thread.join(30)

    return let_go


class RowGate:
    """Stops the sampler after row ``at`` until ``go`` is set (or makes it fail there).

    ``sampler``: the function whose row hook is held (``cached_sample`` of ``app.jobs`` for
    /generate; ``complete``, ``upscale`` of ``app.particle_jobs``)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, at: int, fail: bool = False, sampler: str = "cached_sample"
    ):
        self.at, self.fail = at, fail
        self.reached, self.go = threading.Event(), threading.Event()
        module = app.jobs if sampler == "cached_sample" else app.particle_jobs
        real = getattr(module, sampler)

        def sample(*args: Any, on_row: Any = None, **kwargs: Any) -> Any:
            def hook(rows: int, images: torch.Tensor) -> torch.Tensor | None:
                keep = None if on_row is None else on_row(rows, images)
                if rows == self.at:
                    self.reached.set()
                    if self.fail:
                        raise RuntimeError("the sampler broke")
                    assert self.go.wait(60)
                return keep

            kwargs["on_row"] = hook
            return real(*args, **kwargs)

        monkeypatch.setattr(module, sampler, sample)


def test_a_stream_sends_every_row_then_the_plain_json_body_byte_for_byte(client: httpx.Client) -> None:
    body = {"n": 3, "seed": 40, "label": "sneaker", "format": "json"}
    plain = client.post("/generate", json=body)
    assert plain.status_code == 200
    with client.stream("POST", "/generate", json=body, headers=STREAM) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(events(response))
    names = [name for name, _ in received]
    assert names == ["progress"] * SIZE + ["result"]
    assert received[-1][1] == plain.text  # exactly the format=json body
    final = [pixels(image["png_base64"]) for image in plain.json()["images"]]
    progress = [json.loads(data) for _, data in received[:-1]]
    assert [(p["rows"], p["of"]) for p in progress] == [(r, SIZE) for r in range(1, SIZE + 1)]
    for p in progress:  # the rows drawn so far are the final ones; the rest is grey
        rows = p["rows"]
        assert len(p["images"]) == 3
        for partial, done in zip(p["images"], final, strict=True):
            drawn = pixels(partial)
            assert np.array_equal(drawn[:rows], done[:rows])
            assert (drawn[rows:] == 128).all()


def test_checks_before_any_work_answer_plain_json_not_a_stream(
    served: tuple[FastAPI, httpx.Client],
) -> None:
    service, client = served
    too_many = client.post("/generate", json={"n": 65}, headers=STREAM)
    assert too_many.status_code == 422
    assert too_many.headers["content-type"] == "application/json"
    no_region = client.post("/complete", files={"image": ("a.png", png_upload())}, headers=STREAM)
    assert no_region.status_code == 422 and "no region to fill" in no_region.json()["detail"]
    cancelled = metric(client, CANCELLED)
    let_go = hold_worker(service)
    try:
        with client.stream("POST", "/generate", json={"n": 8}, headers=STREAM) as queued:
            assert queued.status_code == 200
            wait_until(lambda: metric(client, QUEUED) == 8, "the stream's job in the queue")
            full = client.post("/generate", json={"n": 1}, headers=STREAM)
            assert full.status_code == 503 and "busy" in full.json()["detail"]
            assert full.headers["retry-after"] == "1"
        # Closing the queued stream takes its job out of the queue, and the metric counts it.
        wait_until(lambda: metric(client, CANCELLED) == cancelled + 1, "the cancellation")
        assert metric(client, QUEUED) == 0
    finally:
        let_go()


def test_closing_a_running_stream_frees_the_worker_at_the_next_row(
    served: tuple[FastAPI, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = served[1]
    gate = RowGate(monkeypatch, at=1)
    cancelled, generated = metric(client, CANCELLED), metric(client, GENERATED)
    with client.stream("POST", "/generate", json={"n": 8}, headers=STREAM) as response:
        name, data = next(events(response))
        assert name == "progress" and json.loads(data)["rows"] == 1
    wait_until(lambda: metric(client, CANCELLED) == cancelled + 1, "the cancellation")
    gate.go.set()
    following = client.post("/generate", json={"n": 2, "format": "json"})  # served at once
    assert following.status_code == 200
    # The closed stream's 8 images stopped after row 2: only the following request's count.
    assert metric(client, GENERATED) == generated + 2


def test_a_plain_request_merged_with_a_closed_stream_is_unaffected(
    served: tuple[FastAPI, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, client = served
    plain_body = {"n": 2, "seed": 200, "format": "json"}
    alone = client.post("/generate", json=plain_body).json()
    cancelled, generated = metric(client, CANCELLED), metric(client, GENERATED)
    batches = metric(client, BATCHES), metric(client, BATCH_IMAGES)
    gate = RowGate(monkeypatch, at=2)
    pool = ThreadPoolExecutor(1)
    let_go = hold_worker(service)
    try:
        with client.stream("POST", "/generate", json={"n": 3, "seed": 100}, headers=STREAM) as response:
            plain = pool.submit(client.post, "/generate", json=plain_body)
            wait_until(lambda: metric(client, QUEUED) == 5, "both requests in the queue")
            let_go()
            # Released: the two run as one batch, which waits after row 2 until the stream is closed.
            rows = [json.loads(data)["rows"] for _, data in itertools.islice(events(response), 2)]
            assert rows == [1, 2]
        wait_until(lambda: metric(client, CANCELLED) == cancelled + 1, "the cancellation")
    finally:
        let_go()
        gate.go.set()
        pool.shutdown()
    merged = plain.result(60)
    assert merged.status_code == 200
    same_images(merged.json(), alone)
    assert metric(client, GENERATED) == generated + 2  # the streamed request's 3 were dropped
    # One batch held the worker (1 image), then one merged batch of 3 + 2.
    after = metric(client, BATCHES), metric(client, BATCH_IMAGES)
    assert (after[0] - batches[0], after[1] - batches[1]) == (2, 6)


def test_an_error_after_the_stream_began_arrives_as_an_error_event(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    RowGate(monkeypatch, at=2, fail=True)
    with client.stream("POST", "/generate", json={"n": 2}, headers=STREAM) as response:
        assert response.status_code == 200
        received = list(events(response))
    assert [name for name, _ in received] == ["progress", "progress", "error"]
    error = json.loads(received[-1][1])
    assert error == {"status": 500, "detail": "internal error: this is a bug in the server"}


def png_upload() -> bytes:
    gradient = np.tile(np.linspace(0, 255, SIZE, dtype=np.uint8), (SIZE, 1))
    out = io.BytesIO()
    Image.fromarray(gradient, mode="L").save(out, format="PNG")
    return out.getvalue()


def test_a_streamed_completion_keeps_the_known_pixels_and_ends_with_the_plain_body(
    client: httpx.Client,
) -> None:
    form = {"box": "2,3,8,7", "n": "2", "particles": "3", "seed": "9", "format": "json"}
    plain = client.post("/complete", data=form, files={"image": ("a.png", png_upload())})
    assert plain.status_code == 200
    files = {"image": ("a.png", png_upload())}
    with client.stream("POST", "/complete", data=form, files=files, headers=STREAM) as response:
        received = list(events(response))
    assert [name for name, _ in received] == ["progress"] * SIZE + ["result"]
    assert received[-1][1] == plain.text
    final = pixels(plain.json()["images"][0]["png_base64"])
    box = np.zeros((SIZE, SIZE), dtype=bool)
    box[3:7, 2:8] = True
    for _, data in received[:-1]:
        p = json.loads(data)
        drawn = pixels(p["images"][0])
        assert np.array_equal(drawn[~box], final[~box])  # known pixels from the start
        below = box.copy()
        below[: p["rows"]] = False
        assert (drawn[below] == 128).all()  # the hole below the rows drawn is grey


def test_a_streamed_upscale_draws_row_by_row_and_ends_with_the_plain_body(client: httpx.Client) -> None:
    small = io.BytesIO()
    Image.fromarray((np.arange(25).reshape(5, 5) * 10).astype(np.uint8), mode="L").save(small, format="PNG")
    form = {"n": "2", "particles": "3", "seed": "5", "format": "json"}  # 5x5 on a 10x10 model: factor 2
    plain = client.post("/upscale", data=form, files={"image": ("s.png", small.getvalue())})
    assert plain.status_code == 200, plain.text
    files = {"image": ("s.png", small.getvalue())}
    with client.stream("POST", "/upscale", data=form, files=files, headers=STREAM) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(events(response))
    assert [name for name, _ in received] == ["progress"] * SIZE + ["result"]
    assert received[-1][1] == plain.text  # the same seeds give the same body, byte for byte
    shown = [json.loads(data) for _, data in received[:-1]]
    assert [p["rows"] for p in shown] == list(range(1, SIZE + 1))
    for p in shown:
        if "images" in p:
            assert len(p["images"]) == 2
            assert (pixels(p["images"][0])[p["rows"] :] == 128).all()  # rows not drawn yet are grey
