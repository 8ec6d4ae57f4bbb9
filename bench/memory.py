"""``python -m bench.memory``: the server's resident memory through a burst of large uploads.

Starts the server (``python -m app``, on 127.0.0.1 only, as ``bench.load`` does) and sends
``--rounds`` rounds of ``--concurrency`` concurrent ``/likelihood`` uploads of one
``--side`` x ``--side`` PNG. Prints the server process's resident memory (RSS, MiB) before
the burst, after each round, at the peak (sampled every 20 ms throughout) and after the burst.
The server inherits this process's environment, so allocator settings can be compared:
``MALLOC_ARENA_MAX=8 python -m bench.memory``. Bounded (``rounds * concurrency`` requests);
prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import threading
import time
from collections import Counter

import httpx
import numpy as np
from PIL import Image

from bench.load import rss_mib, server


def big_png(side: int, mode: str = "RGB") -> bytes:
    """A ``side`` x ``side`` PNG of smooth gradients (a few hundred kB), in ``mode``."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    wave = ((np.sin(xx * 54) * np.cos(yy * 38) + 1) * 127.5).astype(np.uint8)
    bands = {"L": wave, "R": wave, "G": (xx * 255).astype(np.uint8), "B": (yy * 255).astype(np.uint8)}
    bands["A"] = ((np.hypot(xx - 0.5, yy - 0.5) < 0.4) * 255).astype(np.uint8)
    picture = Image.merge(mode, [Image.fromarray(bands[b]) for b in mode])
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


class PeakSampler:
    """Samples ``pid``'s RSS every ``interval_s`` in a thread; ``peak`` is the largest seen (MiB)."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def upload_round(url: str, png: bytes, concurrency: int) -> Counter[int | str]:
    """``concurrency`` concurrent ``/likelihood`` uploads of ``png``; counts statuses."""
    statuses: Counter[int | str] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one() -> None:
            try:
                files = {"image": ("big.png", png, "image/png")}
                r = await client.post("/likelihood", files=files, data={"label": "9"})
                statuses[r.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return statuses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.memory", description=__doc__)
    p.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=30)
    p.add_argument("--side", type=int, default=2000)
    p.add_argument("--mode", default="RGB", choices=["L", "RGB", "RGBA"])
    args = p.parse_args(argv)
    png = big_png(args.side, args.mode)
    arenas = os.environ.get("MALLOC_ARENA_MAX", "unset")
    print(
        f"{args.rounds} rounds of {args.concurrency} concurrent /likelihood uploads of a "
        f"{args.side}x{args.side} {args.mode} PNG ({len(png) / 1e6:.2f} MB); MALLOC_ARENA_MAX {arenas}"
    )
    with server(args.weights) as s:
        before = rss_mib(s.pid)
        statuses: Counter[int | str] = Counter()
        after_rounds = []
        started = time.perf_counter()
        with PeakSampler(s.pid) as sampler:
            for _ in range(args.rounds):
                statuses += asyncio.run(upload_round(s.url, png, args.concurrency))
                after_rounds.append(rss_mib(s.pid))
        wall = time.perf_counter() - started
        after = rss_mib(s.pid)
        print(f"  statuses {dict(statuses)} in {wall:.1f} s")
        print(f"  RSS after each round (MiB): {' '.join(f'{m:.0f}' for m in after_rounds)}")
        print(f"  RSS before {before:.0f} MiB, peak {sampler.peak:.0f} MiB, after {after:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
