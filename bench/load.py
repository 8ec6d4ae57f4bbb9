"""``python -m bench.load``: the service under concurrent load, on 127.0.0.1 only.

Starts the server (``python -m app``) as a subprocess, once with dynamic batching and once
without, and runs bounded numbers of concurrent httpx clients against it: throughput and
p50/p95/p99 latency of ``/generate`` (n=1) at several concurrencies and of ``/likelihood``;
16 concurrent single-image requests against one 16-image request; and an overload burst
against a small queue, counting 200s, 503s and anything else while ``/health`` is polled.
With ``--url`` it starts nothing and measures the deployment already serving there (uvicorn,
or Ray Serve with any number of replicas): the same throughput and latency figures, with
responses counted by status and by the replica that served them (``X-Replica``).
``--small`` measures small requests instead: ``/generate`` n=1 and n=16 over HTTP against the
same call in process, per torch thread setting, and concurrent particle jobs
(``bench.small_batches``). Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from PIL import Image

from model.data import load_fashion_mnist

RequestMaker = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
Statuses = Counter[int | str]


@dataclass
class Server:
    url: str
    pid: int


@dataclass
class Run:
    """One batch of requests: wall time, each latency, and the responses by status and replica."""

    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Statuses = field(default_factory=Counter)
    replicas: Counter[str] = field(default_factory=Counter)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def server(weights: str | None, **settings: str) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, **{f"PIXELCNN_{k.upper()}": v for k, v in settings.items()}}
    if weights:
        env["PIXELCNN_WEIGHTS"] = weights
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--log-level", "warning"], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the server exited during startup")
            time.sleep(0.3)
        else:
            raise RuntimeError("the server did not become ready")
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run_clients(url: str, concurrency: int, total: int, make_request: RequestMaker) -> Run:
    """``total`` requests from ``concurrency`` clients."""
    run = Run()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for k in range(total):
        queue.put_nowait(k)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                k = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await make_request(client, k)
                    run.statuses[response.status_code] += 1
                    run.replicas[response.headers.get("x-replica", "-")] += 1
                except httpx.HTTPError as exc:
                    run.statuses[type(exc).__name__] += 1
                run.latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.wall = time.perf_counter() - started
        return run


def generate_one(client: httpx.AsyncClient, k: int) -> Awaitable[httpx.Response]:
    return client.post("/generate", json={"n": 1, "seed": k})


def sample_png() -> bytes:
    image = load_fashion_mnist("test").images[0, 0].numpy()
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def report(name: str, run: Run) -> None:
    ok, lat = run.statuses.get(200, 0), run.latencies
    served = sorted((n for replica, n in run.replicas.items() if replica != "-"), reverse=True)
    replicas = f"  by replica {served}" if served else ""  # Ray Serve's X-Replica
    print(
        f"  {name:<34} {len(lat):>4} req {run.wall:>7.2f} s {ok / run.wall:>7.2f} ok/s  "
        f"p50 {percentile(lat, 50):>6.2f}  p95 {percentile(lat, 95):>6.2f}  "
        f"p99 {percentile(lat, 99):>6.2f} s  {dict(run.statuses)}{replicas}"
    )


def loopback_url(url: str) -> str:
    """``url`` without a trailing slash, if it names this machine; benchmarks load nothing else."""
    host = urlsplit(url).hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if urlsplit(url).scheme not in ("http", "https") or not local:
        raise SystemExit(f"error: --url must be http(s) on this machine (127.0.0.1, localhost), not {url!r}")
    return url.rstrip("/")


def measure(url: str, levels: list[int], rounds: int, png: bytes) -> None:
    """Throughput and latency of /generate (n=1) at each concurrency, and of /likelihood."""

    def likelihood(client: httpx.AsyncClient, k: int) -> Awaitable[httpx.Response]:
        return client.post("/likelihood", files={"image": ("x.png", png, "image/png")}, data={"label": "9"})

    for c in levels:
        report(
            f"/generate n=1, concurrency {c}",
            asyncio.run(run_clients(url, c, rounds * max(4, c), generate_one)),
        )
    for c in (1, 16):
        report(f"/likelihood, concurrency {c}", asyncio.run(run_clients(url, c, rounds * 4 * c, likelihood)))


async def overload(url: str, burst: int) -> tuple[Statuses, int, Statuses]:
    """``burst`` concurrent /generate calls while /health is polled: statuses, health ok, failures.

    Health failures are counted by status or exception name (a client-side timeout shows as
    ``ReadTimeout``), so that a slow event loop and a refused connection can be told apart.
    """
    health_ok, health_failures = 0, Counter[int | str]()
    done = asyncio.Event()

    async def poll_health() -> None:
        nonlocal health_ok
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while not done.is_set():
                try:
                    status = (await client.get("/health")).status_code
                    if status == 200:
                        health_ok += 1
                    else:
                        health_failures[status] += 1
                except httpx.HTTPError as exc:
                    health_failures[type(exc).__name__] += 1
                await asyncio.sleep(0.1)

    poller = asyncio.ensure_future(poll_health())
    run = await run_clients(url, burst, burst, generate_one)
    done.set()
    await poller
    return run.statuses, health_ok, health_failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.load", description=__doc__)
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--burst", type=int, default=500)
    p.add_argument("--burst-queue", type=int, default=32)
    p.add_argument(
        "--url", help="measure the service already running there (this machine only); starts no server"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        choices=range(1, 21),
        metavar="1..20",
        help="requests per concurrency level: rounds x max(4, concurrency) (default 1)",
    )
    p.add_argument(
        "--small",
        action="store_true",
        help="only small requests over HTTP against the same call in process (bench.small_batches)",
    )
    p.add_argument("--threads", default="default,1,2", help="with --small: PIXELCNN_TORCH_THREADS to try")
    p.add_argument("--repeats", type=int, default=5, help="with --small: timed requests per figure")
    args = p.parse_args(argv)
    if args.small:
        from bench import small_batches

        small_batches.main(args.weights, args.threads.split(","), args.repeats)
        return 0
    levels = [int(c) for c in args.concurrency.split(",")]
    url = loopback_url(args.url) if args.url else None
    png = sample_png()
    if url:
        print(f"{url}:")
        measure(url, levels, args.rounds, png)
        return 0

    for batching in ("true", "false"):
        print(f"batching {'on' if batching == 'true' else 'off'}:")
        with server(args.weights, batching=batching, max_queue="1024") as s:
            print(f"  server memory at start: {rss_mib(s.pid):.0f} MiB")
            one16 = asyncio.run(
                run_clients(s.url, 1, 1, lambda c, k: c.post("/generate", json={"n": 16, "seed": 0}))
            )
            sixteen = asyncio.run(run_clients(s.url, 16, 16, generate_one))
            print(
                f"  one 16-image request: {one16.wall:.2f} s; 16 concurrent 1-image requests: "
                f"{sixteen.wall:.2f} s (ratio {sixteen.wall / one16.wall:.2f})"
            )
            measure(s.url, levels, args.rounds, png)
            print(f"  server memory after: {rss_mib(s.pid):.0f} MiB")
    print(f"overload: {args.burst} concurrent /generate n=1 against max_queue {args.burst_queue}:")
    with server(args.weights, max_queue=str(args.burst_queue)) as s:
        before = rss_mib(s.pid)
        statuses, health_ok, health_failures = asyncio.run(overload(s.url, args.burst))
        other = sum(v for k, v in statuses.items() if k not in (200, 503))
        print(f"  200: {statuses.get(200, 0)}, 503: {statuses.get(503, 0)}, other: {other} {dict(statuses)}")
        failed = sum(health_failures.values())
        print(f"  /health during the burst: {health_ok} ok, {failed} failed {dict(health_failures)}")
        print(f"  server memory before {before:.0f} MiB, after {rss_mib(s.pid):.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
