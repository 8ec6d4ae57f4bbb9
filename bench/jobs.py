"""``python -m bench.jobs``: what durable jobs cost and whether they survive, on 127.0.0.1 only.

Starts ``python -m app`` (the shipped weights by default) with a job store of its own in a
temporary folder, then:

1. the store's cost per job: the median latency of a synchronous ``/generate`` (n = 1) against
   the same request sent with ``Prefer: respond-async``, polled every 10 ms until done and
   fetched (submit, wait, result), and the median of the 202 answer alone;
2. the restart: jobs accepted, the server killed with SIGKILL while they are queued and
   running, started again on the same store; how many jobs had finished before the kill, how
   many completed after it, and how many equal the synchronous bytes for the same seed.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time

import httpx

from bench.load import server
from model.checkpoint import DEFAULT_WEIGHTS

ASYNC = {"Prefer": "respond-async"}


def wait_done(c: httpx.Client, job_id: str, poll_s: float = 0.01, limit_s: float = 600) -> str:
    deadline = time.monotonic() + limit_s
    while (status := c.get(f"/jobs/{job_id}").json()["status"]) in ("queued", "running"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {status} after {limit_s:g} s")
        time.sleep(poll_s)
    return str(status)


def cost_per_job(url: str, rounds: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post("/generate", json={"n": 1, "seed": 0})  # warm up
        sync, submit, total = [], [], []
        for k in range(rounds):
            body = {"n": 1, "seed": 1000 + k}
            started = time.perf_counter()
            c.post("/generate", json=body).raise_for_status()
            sync.append(time.perf_counter() - started)
            started = time.perf_counter()
            accepted = c.post("/generate", json=body, headers=ASYNC)
            submit.append(time.perf_counter() - started)
            job_id = accepted.json()["id"]
            wait_done(c, job_id)
            c.get(f"/jobs/{job_id}/result").raise_for_status()
            total.append(time.perf_counter() - started)
    sync_ms, total_ms = 1000 * statistics.median(sync), 1000 * statistics.median(total)
    print(
        f"/generate n=1, {rounds} rounds, medians: synchronous {sync_ms:.0f} ms; asynchronous "
        f"(submit, poll every 10 ms, fetch) {total_ms:.0f} ms; the 202 alone "
        f"{1000 * statistics.median(submit):.1f} ms; added by the store {total_ms - sync_ms:.0f} ms "
        f"({total_ms / sync_ms:.2f}x)"
    )


def restart(weights: str | None, store: str, jobs: int, kill_after_s: float) -> None:
    accepted: list[tuple[str, dict[str, object]]] = []
    with (
        server(weights, job_store=store, job_lease_s="2") as s,
        httpx.Client(base_url=s.url, timeout=60) as c,
    ):
        for k in range(jobs):
            body: dict[str, object] = {"n": 8, "label": k % 10}
            if k % 2:
                body["seed"] = 500 + k
            accepted.append((c.post("/generate", json=body, headers=ASYNC).json()["id"], body))
        time.sleep(kill_after_s)
        states = [c.get(f"/jobs/{job_id}").json()["status"] for job_id, _ in accepted]
        os.kill(s.pid, signal.SIGKILL)
    before = {state: states.count(state) for state in sorted(set(states))}
    with (
        server(weights, job_store=store, job_lease_s="2") as s,
        httpx.Client(base_url=s.url, timeout=120) as c,
    ):
        started = time.monotonic()
        completed = sum(wait_done(c, job_id, poll_s=0.1) == "done" for job_id, _ in accepted)
        recovery_s = time.monotonic() - started
        identical = 0
        for job_id, body in accepted:
            result = c.get(f"/jobs/{job_id}/result")
            seed = int(result.headers["X-Seeds"].split(",")[0])
            identical += result.content == c.post("/generate", json={**body, "seed": seed}).content
    print(
        f"restart: {len(accepted)} jobs accepted (n=8 each); at the SIGKILL, {kill_after_s:g} s later: "
        f"{before}; after the restart {completed} completed in {recovery_s:.1f} s, "
        f"{identical} equal the synchronous bytes for their seeds"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m bench.jobs", description=__doc__.split("\n")[0]
    )
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--jobs", type=int, default=12, help="jobs accepted before the SIGKILL")
    p.add_argument(
        "--kill-after", type=float, default=2.0, help="seconds between the last job and the SIGKILL"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/jobs.sqlite3"
        print(f"weights {args.weights}, job store SQLite (WAL) in a temporary folder, {os.cpu_count()} CPUs")
        with server(args.weights, job_store=store) as s:
            cost_per_job(s.url, args.rounds)
        restart(args.weights, store, args.jobs, args.kill_after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
