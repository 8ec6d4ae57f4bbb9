"""The pictures made from the shipped file: the model card's and the README's.

- ``weights/<stem>-samples.png`` and ``-completions.png``: ``model.training.export.pictures``.
- ``docs/``: what the README's curl commands return, fetched from the service itself
  (``python -m app`` on a free 127.0.0.1 port), so they are those responses to the byte; and
  ``docs/upscale.png`` from ``bench.upscale --picture``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from model.checkpoint import load
from model.data import load_fashion_mnist
from model.shipping.figures import ShipError
from model.training.export import pictures as card_pictures

CODE_ROOT = Path(__file__).resolve().parents[2]  # where ``app`` and ``bench`` are
TEST_IMAGE = "docs/test-image-0.png"
# README picture -> (route, JSON body or form fields). The README's curl lines send the same.
SERVICE_PICTURES: dict[str, tuple[str, dict[str, object]]] = {
    "docs/generate-sneakers.png": ("/generate", {"n": 16, "label": "sneaker", "seed": 7, "scale": 4}),
    "docs/generate-any-class.png": ("/generate", {"n": 36, "seed": 100, "scale": 3}),
    "docs/complete-top-half.png": (
        "/complete",
        {"box": "0,0,28,14", "n": 4, "seed": 1, "particles": 16, "scale": 4},
    ),
    "docs/likelihood-heatmap.png": ("/likelihood", {"format": "png"}),
    "docs/upscale-factor-4.png": ("/upscale", {"factor": 4, "n": 4, "seed": 1, "scale": 4}),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_pictures(weights: Path, root: Path, timeout: float = 300.0) -> list[str]:
    """Serve ``weights`` and save each README picture under ``root`` as the service returns it."""
    port = _free_port()
    env = {**os.environ, "PIXELCNN_WEIGHTS": str(weights.resolve())}
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=CODE_ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    written = []
    try:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    raise ShipError(
                        f"the service did not start with {weights.name} (exit {server.returncode})"
                    )
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ShipError(f"the service was not ready within {timeout:.0f} s")
                time.sleep(0.5)
            image = (root / TEST_IMAGE).read_bytes()
            for name, (route, fields) in SERVICE_PICTURES.items():
                if route == "/generate":
                    response = client.post(route, json=fields)
                else:
                    data = {key: str(value) for key, value in fields.items()}
                    response = client.post(
                        route, data=data, files={"image": ("image.png", image, "image/png")}
                    )
                if response.status_code != 200:
                    raise ShipError(f"{route} answered {response.status_code}: {response.text[:200]}")
                (root / name).write_bytes(response.content)
                written.append(name)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return written


def remake_pictures(weights: Path, root: Path) -> list[str]:
    """Every picture made from ``weights`` (the shipped file under ``root``); returns their paths."""
    stem = weights.stem
    card_pictures(load(weights), weights.parent, stem, load_fashion_mnist("test"))
    written = [f"weights/{stem}-samples.png", f"weights/{stem}-completions.png"]
    written += service_pictures(weights, root)
    upscale = subprocess.run(
        [
            sys.executable, "-m", "bench.upscale", "--weights", str(weights.resolve()), "--limit", "3",
            "--factors", "2", "4", "7", "--picture", str((root / "docs" / "upscale.png").resolve()),
        ],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if upscale.returncode != 0:
        raise ShipError(f"bench.upscale failed: {upscale.stderr.strip().splitlines()[-1:]}")
    return [*written, "docs/upscale.png"]
