"""What a hostile client found (issue 15), pinned down against a real server on 127.0.0.1:
dropped uploads, slow clients, errors that say what is wrong, liveness under heatmap bursts."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from app.timeouts import header_timeout_protocol
from bench.memory import big_png
from tests.conftest import random_model
from tests.server import running_server


def png(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


GRAY = png(Image.new("L", (28, 28), 90))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=5)
    settings = Settings(max_batch_delay_ms=2, max_upload_bytes=300_000, body_timeout_s=1.0)
    app = create_app(settings, models={"model": model})
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
    app = create_app(Settings(max_batch_delay_ms=2), models={"model": model})
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ZERO_BY_ZERO = PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0))


@pytest.mark.parametrize("damaged", [PNG_SIGNATURE, ZERO_BY_ZERO], ids=["signature-only", "0x0"])
def test_a_damaged_png_is_a_400_that_says_damaged(url: str, damaged: bytes) -> None:
    r = httpx.post(url + "/likelihood", files={"image": ("x.png", damaged, "image/png")}, timeout=30)
    assert r.status_code == 400, r.text
    assert "damaged PNG" in r.json()["detail"]


def test_a_multipart_body_cut_off_inside_the_image_says_the_upload_was_incomplete(url: str) -> None:
    whole = httpx.Request("POST", url + "/likelihood", files={"image": ("x.png", GRAY, "image/png")})
    body = whole.read()
    cut = body[: len(body) // 2]
    headers = {"Content-Type": whole.headers["Content-Type"]}
    r = httpx.post(url + "/likelihood", content=cut, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert "upload was incomplete" in r.json()["detail"]


def test_generate_with_a_form_body_says_to_send_json(url: str) -> None:
    r = httpx.post(url + "/generate", data={"n": "1"}, timeout=30)  # what curl -d sends
    assert r.status_code == 415, r.text
    assert "Content-Type: application/json" in r.json()["detail"]


@pytest.mark.parametrize("value", ["nan", "-inf"])
def test_a_temperature_that_is_not_a_number_is_called_that(url: str, value: str) -> None:
    files = {"image": ("x.png", GRAY, "image/png")}
    r = httpx.post(
        url + "/complete", files=files, data={"temperature": value, "box": "0,0,28,14"}, timeout=30
    )
    assert r.status_code == 422, r.text
    assert "temperature: must be a finite number" in r.json()["detail"]


def test_errors_echo_at_most_a_bounded_slice_of_the_input(url: str) -> None:
    files = {"image": ("x.png", GRAY, "image/png")}
    r = httpx.post(url + "/likelihood", files=files, data={"label": "z" * 200_000}, timeout=30)
    assert r.status_code == 422 and len(r.content) < 1000, len(r.content)
    keys = {f"k{i}": i for i in range(20_000)}
    r = httpx.post(url + "/generate", json={"n": 1, **keys}, timeout=30)
    assert r.status_code == 422 and len(r.content) < 5000, len(r.content)
    assert "and 19990 more" in r.json()["detail"]


def test_a_trailing_slash_never_redirects_to_the_host_header(url: str) -> None:
    r = httpx.get(url + "/health/", headers={"Host": "evil.example"}, timeout=10)
    assert "evil.example" not in r.headers.get("location", "")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"


def test_health_stays_fast_during_a_burst_of_heatmaps(url: str) -> None:
    """40 concurrent /likelihood format=png; /health is polled throughout."""

    async def burst() -> tuple[list[int], list[float]]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            files = {"image": ("x.png", GRAY, "image/png")}

            async def heatmap() -> int:
                r = await client.post("/likelihood", files=files, data={"format": "png"})
                return r.status_code

            tasks = [asyncio.create_task(heatmap()) for _ in range(40)]
            waits = []
            while not all(t.done() for t in tasks):
                started = time.perf_counter()
                assert (await client.get("/health")).status_code == 200
                waits.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)
            return [t.result() for t in tasks], waits

    statuses, waits = asyncio.run(burst())
    assert statuses == [200] * 40
    # Measured at nice 19 on a loaded 2-core box: 5.4 s worst before (forty renders in the
    # thread pool contend for the GIL), 1.5-1.7 s after (one at a time).
    assert len(waits) >= 5 and max(waits) < 2.5, [(i, round(w, 2)) for i, w in enumerate(waits) if w > 0.1]


def rss_mib() -> float:
    """This process's resident memory (the server runs in a thread of it), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_memory_stays_bounded_through_bursts_of_large_uploads(launcher_url: str) -> None:
    """Three rounds of 16 concurrent /likelihood uploads of a 2000x2000 PNG. Before, each
    decode made float32 copies of 16 MB in whichever pool thread ran it, and glibc kept them
    in up to 16 per-thread arenas; now an upload is shrunk in 8 bits in one of two threads.
    Measured at nice 19 on a loaded 2-core box: 270 MiB growth before, 48 MiB after."""

    async def burst(data: bytes) -> list[int]:
        async with httpx.AsyncClient(base_url=launcher_url, timeout=600) as client:
            files = {"image": ("big.png", data, "image/png")}

            async def one() -> int:
                return (await client.post("/likelihood", files=files, data={"label": "1"})).status_code

            return list(await asyncio.gather(*(one() for _ in range(16))))

    assert asyncio.run(burst(GRAY)) == [200] * 16  # threads and connections exist from here on
    big = big_png(2000, "L")
    before = rss_mib()
    for _ in range(3):
        assert asyncio.run(burst(big)) == [200] * 16
    growth = rss_mib() - before
    assert growth < 100, f"resident memory grew by {growth:.0f} MiB"
