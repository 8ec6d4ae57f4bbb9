"""The shipped colour model (16x16 emoji) served by a real uvicorn server: every route reads
uploads in colour and answers with colour PNGs; completions keep every colour of the known
pixels, upscales agree with the small image in every colour, compression round-trips exactly.
The file itself beats lossless WebP on the held-out emoji, measured here."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.checkpoint import load, read_metadata
from model.data.sources import open_source
from model.inference.likelihood import score_split
from model.inference.superres import downscale
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[1]
COLOUR_WEIGHTS = ROOT / "weights" / "pixelcnn-gated-emoji16.safetensors"
STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emoji") / "emoji-16"
    subprocess.run([sys.executable, "scripts/emoji-folder", str(out), "--size", "16"], check=True, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    settings = Settings(weights=COLOUR_WEIGHTS, max_batch_delay_ms=5)
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def test_the_shipped_colour_model_beats_lossless_webp_on_the_held_out_emoji(emoji: Path) -> None:
    model = load(COLOUR_WEIGHTS)
    assert model.config.image_channels == 3 and model.config.image_size == 16
    data = open_source(emoji, 16, colours=3)
    facts = read_metadata(COLOUR_WEIGHTS)
    assert data.fingerprint == facts["data_sha256"]  # scripts/emoji-folder made exactly its data
    test = data.part("test")
    bits = float(score_split(model, test).mean())
    assert bits == pytest.approx(float(facts["test_bits_per_dim"]), abs=1e-3)
    webp = 0
    for image in test.images:
        out = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(
            out, format="WEBP", lossless=True, quality=100, method=6
        )
        webp += len(out.getvalue())
    assert bits < 8 * webp / test.images.numel(), (bits, 8 * webp / test.images.numel())


def rgb(png_base64: str) -> np.ndarray:
    picture = Image.open(io.BytesIO(base64.b64decode(png_base64)))
    assert picture.mode == "RGB"
    return np.asarray(picture)


def upload(emoji: Path, name: str = "1f600.png") -> tuple[bytes, np.ndarray]:
    path = next(emoji.glob(f"*/{name}"))
    return path.read_bytes(), np.asarray(Image.open(path).convert("RGB"))


def test_the_model_says_it_draws_in_colour(client: httpx.Client) -> None:
    info = client.get("/model").json()
    assert info["image_channels"] == 3 and info["image_size"] == 16 and info["classes"] is None
    assert "16x16 RGB" in info["training"]["data"]


def test_generate_returns_colour_images_reproducibly(client: httpx.Client) -> None:
    r = client.post("/generate", json={"n": 2, "seed": 11, "format": "json"})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    pixels = [rgb(image["png_base64"]) for image in images]
    assert all(p.shape == (16, 16, 3) for p in pixels)
    assert any((p[..., 0] != p[..., 1]).any() for p in pixels)  # not gray
    assert all(0 < image["bits_per_dim"] < 8 for image in images)
    again = client.post("/generate", json={"n": 1, "seed": 12, "format": "json"}).json()["images"][0]
    assert np.array_equal(rgb(again["png_base64"]), pixels[1])
    grid = client.post("/generate", json={"n": 4, "seed": 0})
    assert grid.headers["content-type"] == "image/png" and Image.open(io.BytesIO(grid.content)).mode == "RGB"


def test_generate_streams_colour_rows(client: httpx.Client) -> None:
    with client.stream("POST", "/generate", json={"n": 1, "seed": 3}, headers=STREAM) as r:
        text = "".join(r.iter_text())
    assert r.status_code == 200
    result = json.loads(text.split("event: result")[1].split("data: ", 1)[1].split("\n")[0])
    plain = client.post("/generate", json={"n": 1, "seed": 3, "format": "json"}).json()
    assert np.array_equal(rgb(result["images"][0]["png_base64"]), rgb(plain["images"][0]["png_base64"]))


def test_likelihood_counts_three_dims_a_pixel(client: httpx.Client, emoji: Path) -> None:
    data, _ = upload(emoji)
    body = client.post("/likelihood", files={"image": ("face.png", data, "image/png")}).json()
    per_pixel = np.array(body["bits"])
    per_channel = np.array(body["channel_bits"])
    assert per_pixel.shape == (16, 16) and per_channel.shape == (3, 16, 16)
    assert np.allclose(per_channel.sum(0), per_pixel, atol=1e-3)
    assert body["total_bits"] == pytest.approx(per_pixel.sum(), rel=1e-4)
    assert body["bits_per_dim"] == pytest.approx(body["total_bits"] / (16 * 16 * 3), rel=1e-6)
    heatmap = client.post(
        "/likelihood", files={"image": ("face.png", data, "image/png")}, data={"format": "png"}
    )
    assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")
    # a grayscale upload is read as RGB with three equal channels
    gray = io.BytesIO()
    Image.new("L", (16, 16), 90).save(gray, format="PNG")
    scored = client.post("/likelihood", files={"image": ("g.png", gray.getvalue(), "image/png")})
    assert scored.status_code == 200 and len(scored.json()["channel_bits"]) == 3


def test_complete_keeps_every_colour_of_the_known_pixels(client: httpx.Client, emoji: Path) -> None:
    data, original = upload(emoji)
    r = client.post(
        "/complete",
        files={"image": ("face.png", data, "image/png")},
        data={"box": "3,8,13,16", "n": "2", "seed": "5", "particles": "4", "format": "json"},
    )
    assert r.status_code == 200, r.text
    known = np.ones((16, 16), dtype=bool)
    known[8:16, 3:13] = False
    for image in r.json()["images"]:
        filled = rgb(image["png_base64"])
        assert np.array_equal(filled[known], original[known])


def test_upscale_agrees_with_the_small_image_in_every_colour(client: httpx.Client, emoji: Path) -> None:
    _, original = upload(emoji, "1f34e.png")  # a red apple
    small = downscale(torch.from_numpy(original.copy()).permute(2, 0, 1), 2)  # (3, 8, 8)
    picture = io.BytesIO()
    Image.fromarray(small.permute(1, 2, 0).numpy(), mode="RGB").save(picture, format="PNG")
    r = client.post(
        "/upscale",
        files={"image": ("small.png", picture.getvalue(), "image/png")},
        data={"n": "2", "seed": "1", "particles": "4", "format": "json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["factor"] == 2
    for image in body["images"]:
        big = torch.from_numpy(rgb(image["png_base64"]).copy()).permute(2, 0, 1)
        assert torch.equal(downscale(big, 2), small)


def test_compress_and_decompress_round_trip_colour_images(client: httpx.Client, emoji: Path) -> None:
    for name in ("1f600.png", "1f34e.png"):
        data, original = upload(emoji, name)
        packed = client.post("/compress", files={"image": (name, data, "image/png")})
        assert packed.status_code == 200, packed.text
        assert float(packed.headers["x-bits-per-dim"]) == pytest.approx(
            8 * len(packed.content) / 768, abs=1e-3
        )
        headers = {"content-type": "application/octet-stream"}
        back = client.post("/decompress", content=packed.content, headers=headers)
        assert back.status_code == 200, back.text
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(back.content))), original)
