"""Hosting the service for others, against a real uvicorn on 127.0.0.1: API keys (open routes,
401/403, constant-time matching, never echoed), per-client limits (429 with Retry-After),
safe headers on every answer, cross-site requests refused unless listed (CORS), content
negotiation of streamed answers, and ``python -m app``'s refusals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.errors import ClientError
from app.main import create_app
from app.metrics import Metrics
from app.security.access import Client, current_client
from app.security.keys import KeysFileError, digest, match, new_key, read_keys
from app.settings import Settings
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server
from tests.test_worker import OneModelWorker, generate_job, hold

ROOT = Path(__file__).resolve().parents[1]
GENERATE = {"n": 1, "seed": 0, "label": 0}


@pytest.fixture(scope="module")
def tiny() -> PixelCNN:
    return random_model("gated", 10, size=8, levels=16, channels=8, layers=2, seed=5)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A keys file granting alice (use) and root (admin): its path and the two keys."""
    alice, alice_line = new_key("alice")
    root, root_line = new_key("root", admin=True)
    path = tmp_path_factory.mktemp("keys") / "api-keys.txt"
    path.write_text(f"# who may use this service\n{alice_line}\n\n{root_line}  # the operator\n")
    return path, alice, root


@pytest.fixture(scope="module")
def guarded(tiny: PixelCNN, keys: tuple[Path, str, str]) -> Iterator[str]:
    settings = Settings(api_keys_file=keys[0], max_batch_delay_ms=2, rate_images_per_min=10)
    with running_server(create_app(settings, models={"tiny": tiny})) as url:
        yield url


@pytest.fixture(scope="module")
def plain(tiny: PixelCNN) -> Iterator[httpx.Client]:
    """The service as it runs locally: no keys, no CORS origins."""
    app = create_app(Settings(max_batch_delay_ms=2), models={"tiny": tiny})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def test_a_new_key_is_random_and_its_line_grants_it(tmp_path: Path) -> None:
    key, line = new_key("ci-bot", admin=True)
    other, _ = new_key("ci-bot")
    assert key != other and len(key) > 40 and key not in line
    name, scope, sha = line.split(":")
    assert (name, scope, sha) == ("ci-bot", "admin", digest(key))
    path = tmp_path / "keys"
    path.write_text(line + "\n")
    granted = read_keys(path)
    assert match(granted, key) == granted[0] and match(granted, other) is None
    printed = subprocess.run(
        [sys.executable, "-m", "app", "keys", "new", "alice"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "alice:use:" in printed and "pcnn_" in printed


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("alice:use\n", 1),
        ("# fine\nalice:owner:" + "0" * 64 + "\n", 2),
        ("alice:use:" + "0" * 63 + "\n", 1),
        ("a lice:use:" + "0" * 64 + "\n", 1),
        ("alice:use:" + "0" * 64 + "\nalice:admin:" + "1" * 64 + "\n", 2),
    ],
)
def test_a_malformed_keys_file_is_refused_naming_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(KeysFileError, match=f"line {line}:"):
        read_keys(path)


def test_python_m_app_refuses_a_malformed_keys_file_and_an_open_address_without_keys(tmp_path: Path) -> None:
    bad = tmp_path / "keys"
    bad.write_text("alice:use:nothex\n")
    env = {**os.environ, "PIXELCNN_API_KEYS_FILE": str(bad)}
    run = subprocess.run(
        [sys.executable, "-m", "app"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert run.returncode == 1 and "line 1" in run.stderr and "Traceback" not in run.stderr
    env = {k: v for k, v in os.environ.items() if k != "PIXELCNN_API_KEYS_FILE"}
    run = subprocess.run(
        [sys.executable, "-m", "app", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1 and "--allow-anonymous" in run.stderr and len(run.stderr.splitlines()) == 1


def test_open_routes_need_no_key_and_the_rest_do(guarded: str, keys: tuple[Path, str, str]) -> None:
    _, alice, root = keys
    with httpx.Client(base_url=guarded, timeout=60) as c:
        for path in ("/health", "/ready", "/", "/static/app.js", "/docs", "/openapi.json", "/favicon.ico"):
            assert c.get(path).status_code == 200, path
        for method, path in (
            ("POST", "/generate"),
            ("GET", "/models"),
            ("GET", "/model"),
            ("GET", "/metrics"),
        ):
            r = c.request(method, path, json=GENERATE if method == "POST" else None)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), path
            assert "API key" in r.json()["detail"]
        wrong = c.post("/generate", json=GENERATE, headers={"Authorization": "Bearer pcnn_not-a-key"})
        assert wrong.status_code == 401 and "pcnn_not-a-key" not in wrong.text
        assert (
            c.post("/generate", json=GENERATE, headers={"Authorization": f"Bearer {alice}"}).status_code
            == 200
        )
        assert c.post("/generate", json=GENERATE, headers={"X-API-Key": alice}).status_code == 200
        upload = c.post(
            "/likelihood",
            files={"image": ("x.png", c.get("/favicon.ico").content)},
            headers={"X-API-Key": alice},
        )
        assert upload.status_code == 200
        forbidden = c.post("/admin/reload", headers={"Authorization": f"Bearer {alice}"})
        assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
        assert c.post("/admin/reload", headers={"Authorization": f"Bearer {root}"}).status_code == 200
        metrics = c.get("/metrics", headers={"X-API-Key": root}).text
        assert 'pixelcnn_client_requests_total{client="alice",status="200"}' in metrics
        assert 'pixelcnn_client_requests_total{client="alice",status="403"} 1.0' in metrics
        assert 'pixelcnn_client_requests_total{client="anonymous",status="401"}' in metrics
        assert 'pixelcnn_client_images_total{client="alice"}' in metrics
        assert alice not in metrics and root not in metrics


def test_a_client_past_its_rate_gets_429_and_others_do_not(guarded: str, keys: tuple[Path, str, str]) -> None:
    _, alice, root = keys
    with httpx.Client(base_url=guarded, timeout=60) as c:
        as_root = {"Authorization": f"Bearer {root}"}
        assert c.post("/generate", json={**GENERATE, "n": 8}, headers=as_root).status_code == 200
        r = c.post("/generate", json={**GENERATE, "n": 4}, headers=as_root)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "rate limit" in r.json()["detail"] and "10 images of work per minute" in r.json()["detail"]
        too_big = c.post("/generate", json={**GENERATE, "n": 11}, headers=as_root)
        assert too_big.status_code == 422 and "in a minute (10)" in too_big.json()["detail"]
        # Another key's minute is its own (alice used at most 3 images above).
        assert c.post("/generate", json={**GENERATE, "n": 4}, headers={"X-API-Key": alice}).status_code == 200


def test_one_client_cannot_fill_the_queue(tiny: PixelCNN) -> None:
    settings = Settings(max_batch_delay_ms=0, max_queued_per_client=2, max_queue=64)
    worker = OneModelWorker(tiny, settings, Metrics())
    worker.start()
    alice, bob = Client("alice", "key:alice"), Client("bob", "key:bob")

    async def scenario() -> None:
        release, blocker = await hold(worker)  # the worker is busy: what follows stays queued
        current_client.set(alice)
        queued = [worker.enqueue(generate_job([k]), worker.served) for k in range(2)]
        with pytest.raises(ClientError) as refused:
            worker.enqueue(generate_job([5]), worker.served)
        assert refused.value.status == 429 and "at most 2 per client" in refused.value.detail
        assert refused.value.headers and int(refused.value.headers["Retry-After"]) >= 1
        with pytest.raises(ClientError) as too_big:
            worker.enqueue(generate_job([6, 7, 8]), worker.served)
        assert too_big.value.status == 422
        current_client.set(bob)  # the queue others share still takes bob's work
        queued.append(worker.enqueue(generate_job([9]), worker.served))
        release.set()
        await blocker
        for ticket in queued:
            await worker.wait(ticket)
        current_client.set(alice)  # alice's work has left the queue: she may queue again
        await worker.wait(worker.enqueue(generate_job([1, 2]), worker.served))

    try:
        asyncio.run(scenario())
    finally:
        worker.stop()


SAFE = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def test_every_answer_carries_the_safe_headers(plain: httpx.Client) -> None:
    c = plain
    answers = [
        c.get("/"),
        c.get("/static/app.js"),
        c.post("/generate", json=GENERATE),
        c.post("/generate", json={"n": 0}),
        c.get("/nothing"),
        c.get("/docs"),
    ]
    for r in answers:
        for name, value in SAFE.items():
            assert r.headers[name] == value, (r.url, name)
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, r.url
    assert "script-src 'self';" in answers[0].headers["content-security-policy"]  # no inline script
    assert "access-control-allow-origin" not in answers[2].headers


def test_cross_site_requests_are_refused_unless_their_origin_is_listed(tiny: PixelCNN) -> None:
    listed = "https://app.example"
    settings = Settings(cors_origins=f"{listed}, https://other.example/")
    with (
        running_server(create_app(settings, models={"tiny": tiny})) as url,
        httpx.Client(base_url=url, timeout=60) as c,
    ):
        evil = c.post("/generate", json=GENERATE, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "other web sites" in evil.json()["detail"]
        assert c.post("/generate", json=GENERATE, headers={"Origin": "null"}).status_code == 403
        own = c.post("/generate", json=GENERATE, headers={"Origin": url})
        assert own.status_code == 200
        # A DNS name rebound to this machine by another site is not the service's own origin.
        port = url.rsplit(":", 1)[1]
        rebound = {"Origin": f"http://rebound.example:{port}", "Host": f"rebound.example:{port}"}
        assert c.post("/generate", json=GENERATE, headers=rebound).status_code == 403
        preflight = c.options(
            "/generate",
            headers={
                "Origin": listed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == listed
        allowed = c.post("/generate", json=GENERATE, headers={"Origin": listed})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == listed
        assert "x-seeds" in allowed.headers["access-control-expose-headers"].lower()
        assert (
            c.post("/generate", json=GENERATE, headers={"Origin": "https://other.example"}).status_code == 200
        )
    with (
        running_server(create_app(Settings(), models={"tiny": tiny})) as url,
        httpx.Client(base_url=url) as c,
    ):
        png = c.get("/favicon.ico").content
        simple = c.post(
            "/upscale", files={"image": ("x.png", png)}, headers={"Origin": "https://evil.example"}
        )
        assert simple.status_code == 403  # a "simple" multipart POST needs no preflight: refused here
        preflight = c.options(
            "/generate", headers={"Origin": listed, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [
        ("text/event-stream", True),
        ("text/event-stream, */*", True),
        ("application/json;q=0.5, text/event-stream", True),
        ("text/event-stream;q=0", False),
        ("image/png, text/event-stream;q=0", False),
        ("application/json;q=1, text/event-stream; q=0.0", False),
        ("image/png;q=1.0, text/event-stream;q=0.1", False),
        ("text/event-stream;q=0.5, */*", False),
        ("text/event-streamz", False),
        ("application/x-foo; note=text/event-stream", False),
        ("*/*", False),
        ("", False),
        ("garbage;;;", False),
    ],
)
def test_a_stream_only_when_the_client_prefers_one(plain: httpx.Client, accept: str, streamed: bool) -> None:
    r = plain.post("/generate", json=GENERATE, headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream") is streamed, r.headers["content-type"]
