"""The HTTP service on a real uvicorn server (127.0.0.1, ephemeral port) around a tiny model."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.data import FASHION_CLASSES
from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import log_likelihood
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server


@pytest.fixture(scope="module")
def tiny() -> PixelCNN:
    return random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=3)


@pytest.fixture(scope="module")
def client(tiny: PixelCNN) -> Iterator[httpx.Client]:
    app = create_app(Settings(max_batch_delay_ms=5, max_images=16), models={"tiny": tiny})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def png(array: np.ndarray, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_health_ready_and_model(client: httpx.Client, tiny: PixelCNN) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    assert info["parameters"] == tiny.parameter_count()
    assert info["config"]["arch"] == "gated" and info["classes"][7] == "sneaker"


def test_generate_png_and_json_match_the_library(client: httpx.Client, tiny: PixelCNN) -> None:
    r = client.post("/generate", json={"n": 3, "seed": 10, "label": "sneaker", "format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [img["seed"] for img in body["images"]] == [10, 11, 12]
    assert all(img["label"] == 7 and img["label_name"] == "sneaker" for img in body["images"])
    expected = generate(tiny, 3, labels=7, seeds=[10, 11, 12])
    for k, img in enumerate(body["images"]):
        assert np.array_equal(decode_png(base64.b64decode(img["png_base64"])), expected[k, 0].numpy())
        direct = float(log_likelihood(tiny, expected[k : k + 1].long(), torch.tensor([7])).bits_per_dim[0])
        assert img["bits_per_dim"] == pytest.approx(direct, abs=1e-3)
    single = client.post("/generate", json={"n": 1, "seed": 11, "label": 7, "scale": 2})
    assert single.headers["content-type"] == "image/png" and single.headers["x-seeds"] == "11"
    big = decode_png(single.content)
    assert big.shape == (56, 56) and np.array_equal(big[::2, ::2], expected[1, 0].numpy())
    grid = client.post("/generate", json={"n": 4, "seed": 1})
    assert grid.status_code == 200 and decode_png(grid.content).shape == (2 + 2 * 30, 2 + 2 * 30)


def test_the_same_seed_gives_the_same_bytes(client: httpx.Client) -> None:
    a = client.post("/generate", json={"n": 2, "seed": 99, "temperature": 0.8})
    b = client.post("/generate", json={"n": 2, "seed": 99, "temperature": 0.8})
    assert a.content == b.content
    c = client.post("/generate", json={"n": 2, "seed": 100, "temperature": 0.8})
    assert c.content != a.content
    drawn = client.post("/generate", json={"n": 2, "format": "json"}).json()
    assert len({img["seed"] for img in drawn["images"]}) == 2


def test_complete_keeps_known_pixels_and_matches_the_library(client: httpx.Client, tiny: PixelCNN) -> None:
    image = (np.arange(784).reshape(28, 28) % 251).astype(np.uint8)
    r = client.post(
        "/complete",
        files={"image": ("x.png", png(image), "image/png")},
        data={"box": "0,0,28,14", "n": "2", "seed": "5", "particles": "3", "label": "2", "format": "json"},
    )
    assert r.status_code == 200, r.text
    mask = np.zeros((28, 28), dtype=bool)
    mask[:14] = True
    expected, bits, _ = complete(
        tiny,
        torch.from_numpy(image).view(1, 28, 28),
        torch.from_numpy(mask),
        2,
        labels=2,
        seeds=[5, 6],
        particles=3,
    )
    for k, img in enumerate(r.json()["images"]):
        got = decode_png(base64.b64decode(img["png_base64"]))
        assert np.array_equal(got[~mask], image[~mask])
        assert np.array_equal(got, expected[k, 0].numpy())
        assert img["bits_per_dim"] == pytest.approx(float(bits[k]) / 784, abs=1e-4)


def test_complete_without_a_label_reports_the_inferred_ones(client: httpx.Client, tiny: PixelCNN) -> None:
    image = (np.arange(784).reshape(28, 28) % 199).astype(np.uint8)
    fields = {"box": "0,0,28,14", "n": "3", "seed": "8", "particles": "4"}
    files = {"image": ("x.png", png(image), "image/png")}
    r = client.post("/complete", files=files, data={**fields, "format": "json"})
    assert r.status_code == 200, r.text
    mask = torch.zeros(28, 28, dtype=torch.bool)
    mask[:14] = True
    _, _, labels = complete(
        tiny, torch.from_numpy(image).view(1, 28, 28), mask, 3, seeds=[8, 9, 10], particles=4
    )
    assert labels is not None
    expected = [int(y) for y in labels]
    assert [img["label"] for img in r.json()["images"]] == expected
    assert [img["label_name"] for img in r.json()["images"]] == [FASHION_CLASSES[y] for y in expected]
    assert r.headers["x-labels"] == ",".join(map(str, expected))
    as_png = client.post("/complete", files=files, data=fields)
    assert as_png.headers["x-labels"] == ",".join(map(str, expected))


def test_complete_with_a_mask_image_or_the_alpha_channel(client: httpx.Client) -> None:
    image = np.full((56, 56), 200, dtype=np.uint8)
    mask = np.zeros((56, 56), dtype=np.uint8)
    mask[28:, :] = 255  # bottom half, at twice the model's size: resized
    r = client.post(
        "/complete",
        files={"image": ("x.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")},
        data={"n": "1", "seed": "1", "particles": "1"},
    )
    assert r.status_code == 200, r.text
    got = decode_png(r.content)
    assert (got[:14] == 200).all()
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = 150
    rgba[..., 3] = 255
    rgba[10:20, 10:20, 3] = 0  # transparent = fill
    r = client.post(
        "/complete",
        files={"image": ("x.png", png(rgba, "RGBA"), "image/png")},
        data={"n": "1", "seed": "2", "particles": "1", "format": "json"},
    )
    assert r.status_code == 200, r.text
    got = decode_png(base64.b64decode(r.json()["images"][0]["png_base64"]))
    keep = np.ones((28, 28), dtype=bool)
    keep[10:20, 10:20] = False
    assert (got[keep] == 150).all()


def test_likelihood_json_equals_the_library_and_png_is_a_heatmap(
    client: httpx.Client, tiny: PixelCNN
) -> None:
    image = (np.arange(784).reshape(28, 28) * 7 % 256).astype(np.uint8)
    files = {"image": ("x.png", png(image), "image/png")}
    x = torch.from_numpy(image).view(1, 1, 28, 28).long()
    r = client.post("/likelihood", files=files, data={"label": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = log_likelihood(tiny, x, torch.tensor([3]))
    assert np.allclose(np.array(body["bits"]), -direct.log2_probs[0].numpy(), atol=1e-3)
    assert body["total_bits"] == pytest.approx(float(direct.total_bits[0]), abs=1e-2)
    assert body["label"] == 3 and body["class_posterior"] is None
    marginal = client.post("/likelihood", files=files).json()
    direct = log_likelihood(tiny, x)
    assert marginal["bits_per_dim"] == pytest.approx(float(direct.bits_per_dim[0]), abs=1e-4)
    assert sum(marginal["class_posterior"].values()) == pytest.approx(1.0, abs=1e-5)
    heat = client.post("/likelihood", files=files, data={"format": "png"})
    assert heat.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(heat.content))
    assert picture.width > picture.height > 100


def test_metrics_count_requests(client: httpx.Client) -> None:
    client.post("/generate", json={"n": 1, "seed": 1})
    text = client.get("/metrics").text
    assert 'pixelcnn_requests_total{model="tiny",route="/generate",status="200"}' in text
    assert 'pixelcnn_batch_images_bucket{le="1.0",model="tiny"}' in text
    assert 'pixelcnn_images_generated_total{model="tiny"}' in text


def test_metrics_count_the_docs_and_the_schema_under_their_own_routes(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/static-offline-docs/swagger-ui.css", "/nothing"):
        client.get(path)
    text = client.get("/metrics").text
    for route in ("/docs", "/redoc", "/openapi.json", "/static-offline-docs/{path}"):
        assert f'pixelcnn_requests_total{{model="",route="{route}",status="200"}}' in text, route
    unmatched = [line for line in text.splitlines() if 'route="unmatched"' in line and "_total" in line]
    assert unmatched == ['pixelcnn_requests_total{model="",route="unmatched",status="404"} 1.0'], unmatched


def test_openapi_documents_png_responses(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/generate"]["post"]["responses"]["200"]["content"]
    assert "image/png" in content and "application/json" in content
    assert client.get("/docs").status_code == 200
    assert "PixelCNN" in client.get("/").text


def test_bad_requests_get_clear_4xx_messages(client: httpx.Client) -> None:
    r = client.post("/generate", json={"n": 17})
    assert r.status_code == 422 and "at most 16" in r.json()["detail"]
    r = client.post("/generate", json={"label": "sandals please"})
    assert r.status_code == 422 and "sneaker" in r.json()["detail"]
    r = client.post("/complete", files={"image": ("x.png", png(np.zeros((28, 28), np.uint8)), "image/png")})
    assert r.status_code == 422 and "no region to fill" in r.json()["detail"]
