"""Durable jobs (``Prefer: respond-async``) against a real uvicorn server on 127.0.0.1 and a real
SQLite file: results equal the synchronous bytes, jobs survive SIGKILL of ``python -m app``,
cancelling while queued and while running, events, expiry, store limits, ids, callbacks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[1]
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def tiny() -> PixelCNN:
    return random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=4)


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        job_store=f"sqlite:///{tmp_path}/jobs.sqlite3", max_batch_delay_ms=5, classifier=None, **more
    )


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def wait(
    c: httpx.Client,
    job_id: str,
    until: tuple[str, ...] = ("done", "failed", "cancelled"),
    limit_s: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        status = c.get(f"/jobs/{job_id}").json()
        if status["status"] in until:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def submit(c: httpx.Client, path: str, **kwargs: Any) -> str:
    r = c.post(path, headers=ASYNC, **kwargs)
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/jobs/{r.json()['id']}" and r.json()["status"] == "queued"
    assert r.json()["parameters"]  # what was asked, read back from the stored request
    return str(r.json()["id"])


IMAGE = png((np.arange(144) * 7 % 256).astype(np.uint8).reshape(12, 12))
OTHER_IMAGE = png(np.full((12, 12), 200, np.uint8))
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/generate", {"json": {"n": 3, "seed": 11, "label": 2}}),
    ("/generate", {"json": {"n": 2, "seed": 5, "format": "json"}}),
    ("/generate", {"json": {"n": 1, "temperature": 0.8}}),  # no seed: the job stores the one it drew
    (
        "/complete",
        {
            "files": {"image": ("x.png", IMAGE)},
            "data": {"box": "0,0,12,6", "n": 2, "particles": 3, "seed": 1},
        },
    ),
    (
        "/complete",
        {
            "files": {"image": ("x.png", IMAGE)},
            "data": {"box": "3,3,9,9", "n": 1, "particles": 2, "format": "json"},
        },
    ),
    (
        "/upscale",
        {"files": {"image": ("x.png", IMAGE)}, "data": {"factor": 2, "n": 2, "particles": 2, "seed": 9}},
    ),
    ("/likelihood", {"files": {"image": ("x.png", IMAGE)}, "data": {"label": "bag"}}),
    ("/likelihood", {"files": {"image": ("x.png", IMAGE)}, "data": {"format": "png"}}),
    ("/compress", {"files": [("image", ("a.png", IMAGE)), ("image", ("b.png", OTHER_IMAGE))]}),
]


def same_seeds(path: str, kwargs: dict[str, Any], seeds: str) -> dict[str, Any]:
    """The synchronous request that makes what a seedless job made: its seeds, as X-Seeds said."""
    base = int(seeds.split(",")[0])
    if "json" in kwargs:
        return {"json": {**kwargs["json"], "seed": base}}
    return {**kwargs, "data": {**kwargs["data"], "seed": str(base)}}


def same_answer(result: httpx.Response, sync: httpx.Response, path: str) -> None:
    """PNGs and containers byte for byte; JSON field for field, its bits/dim to 1e-6 (the last bits
    of a float sum depend on what a batch was merged with, synchronous or not)."""
    if not result.headers["content-type"].startswith("application/json"):
        assert result.content == sync.content, path
        return
    ours, theirs = result.json(), sync.json()
    for mine, other in zip(ours.pop("images", []), theirs.pop("images", []), strict=True):
        assert mine.pop("bits_per_dim") == pytest.approx(other.pop("bits_per_dim"), abs=1e-6)
        assert mine == other, path
    if "bits" in ours:  # /likelihood
        assert np.allclose(ours.pop("bits"), theirs.pop("bits"), atol=1e-6)
        for key in ("total_bits", "bits_per_dim"):  # float32 sums: a total of 600 bits has ulp 6e-5
            assert ours.pop(key) == pytest.approx(theirs.pop(key), rel=1e-6, abs=1e-6)
    assert ours == theirs, path


def test_async_results_are_the_synchronous_answers(tiny: PixelCNN, tmp_path: Path) -> None:
    with (
        running_server(create_app(settings(tmp_path), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        jobs = [(path, kwargs, submit(c, path, **kwargs)) for path, kwargs in REQUESTS * 2 + REQUESTS[:2]]
        assert len(jobs) == 20 and len({job_id for *_, job_id in jobs}) == 20
        for path, kwargs, job_id in jobs:
            status = wait(c, job_id)
            assert status["status"] == "done" and status["route"] == path, status
            assert (
                status["rows"]
                == status["of_rows"]
                == (12 if path in ("/generate", "/complete", "/upscale") else 0)
            )
            result = c.get(f"/jobs/{job_id}/result")
            sync_kwargs = kwargs
            if "X-Seeds" in result.headers and "seed" not in str(kwargs):
                sync_kwargs = same_seeds(path, kwargs, result.headers["X-Seeds"])
            sync = c.post(path, **sync_kwargs)
            assert result.status_code == sync.status_code == 200
            same_answer(result, sync, path)
            for header in ("content-type", "X-Seeds", "X-Labels", "X-Bits-Per-Dim", "X-Model", "X-Bytes"):
                assert result.headers.get(header) == sync.headers.get(header), (path, header)
        data = c.get(f"/jobs/{jobs[-3][2]}/result").content  # a container, decoded by a job too
        job_id = submit(c, "/decompress", files={"data": ("d", data)})
        assert wait(c, job_id)["status"] == "done"
        assert (
            c.get(f"/jobs/{job_id}/result").content
            == c.post("/decompress", files={"data": ("d", data)}).content
        )
        described = c.get(f"/jobs/{jobs[3][2]}").json()
        assert (
            described["parameters"]["box"] == "0,0,12,6"
            and described["parameters"]["image"]["filename"] == "x.png"
        )
        assert described["created"] <= described["started"] <= described["finished"]


def test_bad_requests_are_answered_at_once_and_ids_are_checked(tiny: PixelCNN, tmp_path: Path) -> None:
    with (
        running_server(create_app(settings(tmp_path, max_stored_jobs=2), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        assert c.post("/generate", json={"n": 0}, headers=ASYNC).status_code == 422
        assert c.post("/generate", json={"label": "nope"}, headers=ASYNC).status_code == 422
        assert c.post(
            "/complete", files={"image": ("x.png", b"not a png")}, data={"box": "0,0,2,2"}, headers=ASYNC
        ).status_code in (400, 415)
        for bad in ("nope", "0" * 31, "Z" * 32):
            r = c.get(f"/jobs/{bad}")
            assert r.status_code == 422 and "32 hex digits" in r.json()["detail"]
        unknown = c.get("/jobs/" + "0" * 32)
        assert unknown.status_code == 404 and "never accepted" in unknown.json()["detail"]
        assert c.delete("/jobs/" + "0" * 32).status_code == 404
        first = submit(c, "/generate", json={"n": 1, "seed": 1})
        submit(c, "/generate", json={"n": 1, "seed": 2})
        full = c.post("/generate", json={"n": 1}, headers=ASYNC)
        assert full.status_code == 503 and "2 jobs" in full.json()["detail"]
        assert wait(c, first)["status"] == "done"


def test_cancel_while_queued_and_while_running(tmp_path: Path) -> None:
    slow = random_model("gated", 10, size=28, levels=256, channels=64, layers=6, seed=2)
    options = settings(tmp_path, job_concurrency=1, max_batch_size=64)
    with (
        running_server(create_app(options, models={"slow": slow})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        running = submit(c, "/generate", json={"n": 64, "seed": 0})
        queued = submit(c, "/generate", json={"n": 1, "seed": 0})
        status = c.get(f"/jobs/{queued}").json()
        assert status["status"] == "queued" and status["position"] == 0
        assert c.get(f"/jobs/{queued}/result").status_code == 409
        cancelled = c.delete(f"/jobs/{queued}").json()
        assert cancelled["status"] == "cancelled"
        deadline = time.monotonic() + 60
        while (status := c.get(f"/jobs/{running}").json())["rows"] < 2:
            assert status["status"] == "running" and time.monotonic() < deadline, status
            time.sleep(0.05)
        assert c.delete(f"/jobs/{running}").status_code == 200
        stopped = wait(c, running)
        assert stopped["status"] == "cancelled" and stopped["rows"] < 28, stopped
        late = c.get(f"/jobs/{running}/result")
        assert late.status_code == 409 and late.json()["status"] == "cancelled"
        # The worker is free again at once: a new job runs to the end.
        after = submit(c, "/generate", json={"n": 1, "seed": 3})
        assert wait(c, after)["status"] == "done"


def test_events_follow_a_job_from_its_current_state(tiny: PixelCNN, tmp_path: Path) -> None:
    with (
        running_server(create_app(settings(tmp_path), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        job_id = submit(c, "/generate", json={"n": 4, "seed": 3})
        with c.stream("GET", f"/jobs/{job_id}/events") as events:
            text = "".join(events.iter_text())
        names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
        assert names[-1] == "result" and set(names[:-1]) <= {"progress"}, names
        last = json.loads([line for line in text.splitlines() if line.startswith("data: ")][-1][6:])
        assert last["status"] == "done" and last["result"] == f"/jobs/{job_id}/result"
        again = c.get(f"/jobs/{job_id}/events").text  # connecting late: the end at once
        assert "event: result" in again and "event: progress" not in again


def test_finished_jobs_expire(tiny: PixelCNN, tmp_path: Path) -> None:
    with (
        running_server(create_app(settings(tmp_path, job_ttl_s=0.5), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        job_id = submit(c, "/generate", json={"n": 1, "seed": 3})
        wait(c, job_id)
        deadline = time.monotonic() + 30
        while c.get(f"/jobs/{job_id}").status_code == 200:
            assert time.monotonic() < deadline, "the finished job was never removed"
            time.sleep(0.2)
        assert c.get(f"/jobs/{job_id}/result").status_code == 404


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(503 if len(Receiver.received) == 1 else 204)  # the first try fails
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_callback_is_signed_retried_and_only_to_listed_hosts(
    tiny: PixelCNN, tmp_path: Path, receiver: str
) -> None:
    options = settings(tmp_path, callback_hosts=receiver, callback_secret="s3cret")
    with (
        running_server(create_app(options, models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        hook = f"http://{receiver}/done"
        job_id = submit(c, "/generate", json={"n": 1, "seed": 1, "callback_url": hook})
        assert submit(c, "/likelihood", files={"image": ("x.png", IMAGE)}, data={"callback_url": hook})
        for bad in ("http://10.0.0.1/x", "http://localhost:1/x", "file:///etc/passwd"):
            r = c.post("/generate", json={"n": 1, "callback_url": bad}, headers=ASYNC)
            assert r.status_code == 422, bad
        plain = c.post("/generate", json={"n": 1, "callback_url": hook})
        assert plain.status_code == 422 and "respond-async" in plain.json()["detail"]
        wait(c, job_id)
        deadline = time.monotonic() + 30
        while len(Receiver.received) < 3:  # one failed try, then both jobs
            assert time.monotonic() < deadline, Receiver.received
            time.sleep(0.1)
        for headers, body in Receiver.received:
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert headers["X-PixelCNN-Signature"] == expected
            status = json.loads(body)
            assert status["status"] == "done" and "png_base64" not in body.decode()
        assert job_id in {json.loads(body)["id"] for _, body in Receiver.received}
