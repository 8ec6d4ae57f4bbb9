"""/compress and /decompress on a real server: exact round trips, clear 4xx on bad data."""

from __future__ import annotations

import base64
import io
import os
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
from app.models.registry import label_classifier
from app.settings import Settings
from model.checkpoint import CheckpointError
from model.classifier import DEFAULT_CLASSIFIER, load_classifier
from model.codec import compress, decompress
from model.codec.container import Header, pack, unpack
from model.data import load_fashion_mnist
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server


@pytest.fixture(scope="module")
def served() -> PixelCNN:
    return random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=7)


@pytest.fixture(scope="module")
def client(served: PixelCNN) -> Iterator[httpx.Client]:
    app = create_app(Settings(max_batch_delay_ms=2, max_images=40), models={"served": served})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_fashion_mnist("test").images[3, 0].numpy()


def test_round_trip_is_exact_in_both_forms(client: httpx.Client, image: np.ndarray) -> None:
    r = client.post("/compress", files={"image": ("x.png", png(image), "image/png")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert int(r.headers["x-bytes"]) == len(r.content)
    assert float(r.headers["x-bits-per-dim"]) == pytest.approx(8 * len(r.content) / 784, abs=1e-3)
    raw = client.post("/decompress", content=r.content, headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 200, raw.text
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(raw.content))), image)
    as_json = client.post(
        "/compress", files={"image": ("x.png", png(image), "image/png")}, data={"format": "json"}
    )
    body = as_json.json()
    data = base64.b64decode(body["data_base64"])
    assert data == r.content and body["bytes"] == len(data)
    multipart = client.post("/decompress", files={"data": ("d.bin", data, "application/octet-stream")})
    assert multipart.status_code == 200, multipart.text
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(multipart.content))), image)


def test_many_images_in_one_request_share_one_container(client: httpx.Client, served: PixelCNN) -> None:
    images = load_fashion_mnist("test").images[:35, 0].numpy()  # a full coder batch and 3 more
    files = [("image", (f"{k}.png", png(im), "image/png")) for k, im in enumerate(images)]
    r = client.post("/compress", files=files)
    assert r.status_code == 200, r.text
    assert r.headers["x-images"] == "35"
    assert float(r.headers["x-bits-per-dim"]) == pytest.approx(8 * len(r.content) / (35 * 784), abs=1e-3)
    assert torch.equal(decompress(served, r.content)[:, 0], torch.from_numpy(images))  # in upload order
    back = client.post("/decompress", content=r.content, headers={"content-type": "application/octet-stream"})
    assert back.status_code == 200 and back.headers["x-images"] == "35"

    too_many = client.post("/compress", files=files + files[:6])  # 41, over this server's 40
    assert too_many.status_code == 413 and "at most 40" in too_many.json()["detail"]


def test_the_labels_are_the_classifiers_guesses_or_the_fewest_bits_without_one(
    client: httpx.Client, served: PixelCNN
) -> None:
    images = load_fashion_mnist("test").images[40:46]
    files = [("image", (f"{k}.png", png(im[0].numpy()), "image/png")) for k, im in enumerate(images)]
    guessed = client.post("/compress", files=files)
    assert guessed.status_code == 200, guessed.text
    assert guessed.content == compress(served, images, classifier=load_classifier(DEFAULT_CLASSIFIER))
    app = create_app(Settings(max_batch_delay_ms=2, classifier=None), models={"served": served})
    with running_server(app) as url:
        fewest = httpx.post(f"{url}/compress", files=files, timeout=120)
    assert fewest.status_code == 200, fewest.text
    assert fewest.content == compress(served, images)
    assert torch.equal(decompress(served, fewest.content), images)


def test_truncated_corrupted_and_foreign_data_get_400(client: httpx.Client, image: np.ndarray) -> None:
    data = client.post("/compress", files={"image": ("x.png", png(image), "image/png")}).content
    octet = {"content-type": "application/octet-stream"}
    for bad in (data[:-3], data[: len(data) // 2], data[:5]):
        r = client.post("/decompress", content=bad, headers=octet)
        assert r.status_code == 400 and "cannot decompress" in r.json()["detail"], r.text
    for position in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[position] ^= 0x41
        r = client.post("/decompress", content=bytes(flipped), headers=octet)
        assert r.status_code == 400, (position, r.status_code, r.text)
    other = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=8)
    foreign = compress(other, torch.from_numpy(image).view(1, 1, 28, 28))
    r = client.post("/decompress", content=foreign, headers=octet)
    assert r.status_code == 400 and "other weights" in r.json()["detail"]


def test_a_forged_image_count_is_refused_before_decoding(client: httpx.Client, image: np.ndarray) -> None:
    data = client.post("/compress", files={"image": ("x.png", png(image), "image/png")}).content
    weights = unpack(data)[0].weights
    header = Header(weights, 28, 256, 60_000)
    forged = pack(header, 0, b"")
    r = client.post("/decompress", content=forged, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and "60000 images" in r.json()["detail"]
    empty = pack(Header(weights, 28, 256, 0), 0, b"")
    r = client.post("/decompress", content=empty, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and "no images" in r.json()["detail"]


def test_bad_requests_to_the_codec_routes(client: httpx.Client) -> None:
    assert (
        client.post(
            "/decompress", content=b"", headers={"content-type": "application/octet-stream"}
        ).status_code
        == 400
    )
    assert client.post("/decompress", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/decompress", data={"data": "text"}, files={"other": ("a", b"b")}).status_code == 422
    assert (
        client.post("/compress", files={"image": ("x.png", b"not an image", "image/png")}).status_code == 415
    )


def test_which_classifier_the_service_uses(served: PixelCNN, tmp_path: Path) -> None:
    assert label_classifier(served, Settings()) is not None  # the shipped one fits 28x28, 256 levels
    assert label_classifier(served, Settings(classifier=None)) is None
    assert Settings(classifier="").classifier is None  # PIXELCNN_CLASSIFIER= turns it off
    assert label_classifier(random_model("gated", 10), Settings()) is None  # 10x10, 16 levels: no fit
    assert label_classifier(random_model("gated", None, size=28, levels=256), Settings()) is None
    with pytest.raises(CheckpointError, match="PIXELCNN_CLASSIFIER"):
        label_classifier(served, Settings(classifier=tmp_path / "missing.safetensors"))


def test_the_server_refuses_to_start_with_a_missing_classifier(tmp_path: Path) -> None:
    env = {**os.environ, "PIXELCNN_CLASSIFIER": str(tmp_path / "missing.safetensors")}
    result = subprocess.run(
        [sys.executable, "-m", "app", "--port", "1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "PIXELCNN_CLASSIFIER" in result.stderr
