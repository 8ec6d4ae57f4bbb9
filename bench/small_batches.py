"""Small requests over HTTP against the same work in process (``python -m bench.load --small``).

For one client at a time: the median time of ``/generate`` over HTTP against ``generate(n)``
called in this process (default torch threads), calls taken in turn, for a server started
with each ``PIXELCNN_TORCH_THREADS`` asked for (``default`` leaves it unset), so that the
fastest setting shows; then, on a default server, 16 concurrent ``/upscale`` and ``/complete`` requests
(one result of 8 particles each, different images) against one of them alone, checking that
each concurrent answer equals the same request sent alone. Talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from collections.abc import Callable
from functools import partial

import httpx
import numpy as np
from PIL import Image

from bench.load import run_clients, server
from model.checkpoint import DEFAULT_WEIGHTS, load
from model.data import load_fashion_mnist
from model.inference.generation import generate
from model.network.pixelcnn import PixelCNN


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def paired(model: PixelCNN, url: str, sizes: list[int], repeats: int) -> dict[int, tuple[float, float]]:
    """Per ``n``: the median seconds of ``generate(n)`` in this process and of ``/generate``
    with the same ``n`` over HTTP, the two taken in turn (after one warm-up call each), so that
    the machine's drift from minute to minute falls on both alike."""
    with httpx.Client(base_url=url, timeout=600) as client:

        def over_http(n: int) -> None:
            client.post("/generate", json={"n": n, "seed": 0}).raise_for_status()  # seeds 0 .. n-1

        result = {}
        for n in sizes:
            here, there = partial(generate, model, n, seeds=list(range(n))), partial(over_http, n)
            here(), there()
            pairs = [(_seconds(here), _seconds(there)) for _ in range(repeats)]
            result[n] = (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs))
        return result


Files = dict[str, tuple[str, bytes, str]]


def particle_requests(route: str, count: int) -> list[tuple[Files, dict[str, str]]]:
    """``count`` requests of one result and 8 particles, each for another test image."""
    images = load_fashion_mnist("test").images[:count, 0].numpy()
    requests = []
    for k, image in enumerate(images):
        if route == "/upscale":
            small = image.reshape(14, 2, 14, 2).mean((1, 3)).round()
            files = {"image": ("small.png", png(small), "image/png")}
            data = {"n": "1", "seed": str(k), "particles": "8"}
        else:
            files = {"image": ("image.png", png(image), "image/png")}
            data = {"n": "1", "seed": str(k), "particles": "8", "box": "0,10,28,28"}
        requests.append((files, data))
    return requests


def concurrent_particles(url: str, route: str, count: int) -> None:
    requests = particle_requests(route, count)
    with httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        alone = []
        for files, data in requests:
            r = client.post(route, files=files, data=data)
            r.raise_for_status()
            alone.append(r.content)
        one_by_one = time.perf_counter() - started
        started = time.perf_counter()
        client.post(route, files=requests[0][0], data=requests[0][1]).raise_for_status()
        single = time.perf_counter() - started
    answers: list[bytes] = [b""] * count

    async def send(client: httpx.AsyncClient, k: int) -> httpx.Response:
        files, data = requests[k]
        response = await client.post(route, files=files, data=data)
        answers[k] = response.content
        return response

    together = asyncio.run(run_clients(url, count, count, send))
    same = sum(a == b for a, b in zip(answers, alone, strict=True))
    print(
        f"  {route}: one alone {single:.2f} s; {count} concurrent {together.wall:.2f} s "
        f"({together.wall / single:.2f}x one alone), {count} one after another {one_by_one:.2f} s; "
        f"{same} of {count} concurrent answers equal to the same request alone"
    )


def main(weights: str | None, settings: list[str], repeats: int) -> None:
    sizes, model = [1, 16], load(weights or DEFAULT_WEIGHTS)
    print(f"small requests, one client, medians of {repeats}, in process and over HTTP in turn:")
    for threads in settings:
        extra = {} if threads == "default" else {"torch_threads": threads}
        with server(weights, **extra) as s:
            times = paired(model, s.url, sizes, repeats)
        figures = (
            f"n={n} {there:.3f} s against {here:.3f} s ({there / here:.2f}x)"
            for n, (here, there) in times.items()
        )
        print(f"  PIXELCNN_TORCH_THREADS={threads}: " + ", ".join(figures))
    print("particle jobs, default server:")
    with server(weights) as s:
        for route in ("/upscale", "/complete"):
            concurrent_particles(s.url, route, 16)
