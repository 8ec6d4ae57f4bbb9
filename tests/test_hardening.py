"""What a hostile client found (issue 15), pinned down against a real server on 127.0.0.1:
dropped uploads, slow clients, errors that say what is wrong, liveness under heatmap bursts."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from app.timeouts import header_timeout_protocol
from tests.conftest import random_model
from tests.server import running_server


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=5)
    settings = Settings(max_batch_delay_ms=2, max_upload_bytes=300_000, body_timeout_s=1.0)
    app = create_app(settings, model_loader=lambda s: model)
    with running_server(app) as base:
        yield base


def raw_exchange(url: str, request: bytes, hold_s: float = 0.3, read: bool = False) -> bytes:
    """Send ``request`` bytes on a fresh socket, wait ``hold_s``, then read (or just close)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        time.sleep(hold_s)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def server_errors(url: str) -> dict[str, float]:
    """``route -> count`` of 5xx answers the server has recorded."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r'pixelcnn_requests_total\{route="([^"]+)",status="5\d\d"\} (\S+)', text)
    return {route: float(count) for route, count in found}


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/octet-stream", b"0123456789"),
        (
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="data"; '
            b'filename="d"\r\nContent-Type: application/octet-stream\r\n\r\n0123456789',
        ),
    ],
)
def test_a_client_that_drops_an_upload_is_not_a_server_error(
    url: str, content_type: str, body: bytes
) -> None:
    for path in ("/decompress", "/compress", "/likelihood"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: 1000\r\n\r\n"
        ).encode()
        raw_exchange(url, head + body, hold_s=0.3)
    time.sleep(0.5)  # the server notices the disconnect
    assert server_errors(url) == {}


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(url: str) -> None:
    """The fixture's server waits 1 s for more of a body (``body_timeout_s``)."""
    head = (
        b"POST /decompress HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_exchange(url, head + b"0123456789", hold_s=0, read=True)  # read until closed
    assert status_of(answer) == 408, answer[:200]
    assert b"not received within 1 s" in answer
    assert time.monotonic() - started < 8


@pytest.fixture(scope="module")
def launcher_url() -> Iterator[str]:
    """A server with the protocol that ``python -m app`` serves with, headers timed at 1 s."""
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=5)
    app = create_app(Settings(max_batch_delay_ms=2), model_loader=lambda s: model)
    with running_server(app, http=header_timeout_protocol(1.0)) as base:
        yield base


def test_slow_headers_get_408_and_silent_connections_are_closed(launcher_url: str) -> None:
    started = time.monotonic()
    partial = raw_exchange(launcher_url, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ", 0, read=True)
    silent = raw_exchange(launcher_url, b"", 0, read=True)
    assert status_of(partial) == 408 and b"headers not received within 1 s" in partial
    assert silent == b""
    assert time.monotonic() - started < 8
    # A prompt client on the same server is served as usual, kept alive across requests.
    with httpx.Client(base_url=launcher_url, timeout=10) as client:
        assert client.get("/health").status_code == 200
        time.sleep(1.5)
        assert client.get("/health").status_code == 200
