"""Durable jobs that outlive their process, against real servers on 127.0.0.1: accepted jobs
survive SIGKILL of ``python -m app`` with the same bytes, replicas sharing a PostgreSQL store
serve each other's jobs, a job that meets a bug fails once, and a job runs on the weights it
was accepted for or not at all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from model.checkpoint import save
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server
from tests.test_jobs import ASYNC, IMAGE, settings, submit, wait

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny() -> PixelCNN:
    return random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(weights: Path, store: str, port: int, **settings: str) -> subprocess.Popen[bytes]:
    env = {
        **{f"PIXELCNN_{k.upper()}": v for k, v in settings.items()},
        **os.environ,
        "PIXELCNN_WEIGHTS": str(weights),
        "PIXELCNN_CLASSIFIER": "",
        "PIXELCNN_JOB_STORE": store,
        "PIXELCNN_JOB_LEASE_S": "2",
        "PIXELCNN_TORCH_THREADS": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "python -m app did not start"
        time.sleep(0.2)


def test_accepted_jobs_survive_sigkill_with_the_same_bytes(tmp_path: Path) -> None:
    weights = tmp_path / "slowish.safetensors"
    save(random_model("gated", 10, size=28, levels=256, channels=32, layers=4, seed=8), weights)
    store = f"sqlite:///{tmp_path}/jobs.sqlite3"
    port = free_port()
    server = start_app(weights, store, port)
    accepted: list[tuple[str, dict[str, Any]]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for k in range(10):
                body = {"n": 16, "label": k % 10} | ({"seed": 100 + k} if k % 3 else {})
                r = c.post("/generate", json=body, headers=ASYNC)
                assert r.status_code == 202
                accepted.append((r.json()["id"], body))
            time.sleep(0.5)  # some run, some wait
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    server = start_app(weights, store, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            for job_id, body in accepted:
                status = wait(c, job_id, limit_s=120)
                assert status["status"] == "done", status
                result = c.get(f"/jobs/{job_id}/result")
                seed = int(result.headers["X-Seeds"].split(",")[0])
                assert "seed" not in body or seed == body["seed"]
                assert result.content == c.post("/generate", json={**body, "seed": seed}).content, job_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_processes_sharing_a_postgresql_store_serve_each_others_jobs(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two ``python -m app`` processes (as two replicas) on one PostgreSQL store: a job submitted
    through one is read, awaited, fetched and cancelled through the other."""
    weights = tmp_path / "tiny.safetensors"
    save(random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=4), weights)
    ports = [free_port(), free_port()]
    servers = [start_app(weights, postgres_url, port, job_concurrency="1") for port in ports]
    try:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=60) as a,
            httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=60) as b,
        ):
            job_id = submit(a, "/generate", json={"n": 2, "seed": 21})
            assert wait(b, job_id)["status"] == "done"
            assert (
                b.get(f"/jobs/{job_id}/result").content
                == a.post("/generate", json={"n": 2, "seed": 21}).content
            )
            assert "event: result" in b.get(f"/jobs/{job_id}/events").text
            many = [submit(b, "/generate", json={"n": 8, "seed": k}) for k in range(12)]
            cancelled = a.delete(f"/jobs/{many[-1]}").json()
            assert cancelled["status"] in ("cancelled", "done")  # done only if both were that quick
            final = [wait(a, job)["status"] for job in many]
            assert final[:-1] == ["done"] * 11 and final[-1] == cancelled["status"]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def test_a_job_that_meets_a_bug_fails_once_and_is_not_run_again(
    tiny: PixelCNN, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    with (
        running_server(create_app(settings(tmp_path), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        monkeypatch.setattr("app.jobs.log_likelihood", broken)
        job_id = submit(c, "/likelihood", files={"image": ("x.png", IMAGE)})
        status = wait(c, job_id)
        assert status["status"] == "failed" and "internal error" in status["error"]
        result = c.get(f"/jobs/{job_id}/result")
        assert result.status_code == 409 and result.json()["status"] == "failed"
        time.sleep(1.5)
        assert c.get(f"/jobs/{job_id}").json()["status"] == "failed"  # not queued again


def test_a_job_runs_on_the_weights_it_was_accepted_for_or_not_at_all(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    slow = random_model("gated", 10, size=28, levels=256, channels=48, layers=5, seed=2)
    save(slow, folder / "slow.safetensors")
    save(
        random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=4),
        folder / "tiny.safetensors",
    )
    options = Settings(
        weights=str(folder),
        job_store=f"sqlite:///{tmp_path}/jobs.sqlite3",
        classifier=None,
        job_concurrency=1,
    )
    with running_server(create_app(options)) as url, httpx.Client(base_url=url, timeout=60) as c:
        first = submit(c, "/generate", json={"n": 64, "seed": 0, "model": "slow"})
        pinned = submit(c, "/generate", json={"n": 1, "seed": 0, "model": "tiny"})
        assert c.get(f"/jobs/{pinned}").json()["status"] == "queued"
        save(
            random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=5),
            folder / "tiny.safetensors",
        )
        assert c.post("/admin/reload").json()["replaced"] == ["tiny"]
        assert wait(c, first)["status"] == "done"
        status = wait(c, pinned)
        assert status["status"] == "failed" and "accepted for weights" in status["error"], status
        assert c.get(f"/jobs/{pinned}/result").status_code == 409
