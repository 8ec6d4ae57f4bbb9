"""``POST /upscale`` on a real uvicorn server (127.0.0.1, ephemeral port) around a tiny model."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import tests.test_readme as readme
from app.main import create_app
from app.settings import Settings
from model import downscale, upscale
from model.classifier import DEFAULT_CLASSIFIER, load_classifier
from model.data import FASHION_CLASSES
from model.network.classifier import guess_from_small
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server


@pytest.fixture(scope="module")
def tiny() -> PixelCNN:
    return random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=3)


@pytest.fixture(scope="module")
def client(tiny: PixelCNN) -> Iterator[httpx.Client]:
    settings = Settings(max_batch_delay_ms=5, max_images=8, max_particles=8, max_completion_batch=32)
    app = create_app(settings, models={"tiny": tiny})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode="L").save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes | str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data)))


def small_image(side: int) -> np.ndarray:
    return ((np.arange(side * side).reshape(side, side) * 37) % 256).astype(np.uint8)


def test_a_small_image_gives_its_factor_and_images_that_agree(client: httpx.Client, tiny: PixelCNN) -> None:
    for factor, side in ((2, 14), (4, 7), (7, 4)):
        small = small_image(side)
        r = client.post(
            "/upscale",
            files={"image": ("s.png", png(small), "image/png")},
            data={"n": "3", "seed": "11", "particles": "2", "label": "sneaker", "format": "json"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["factor"] == factor and r.headers["x-factor"] == str(factor)
        assert np.array_equal(decode(body["small_png_base64"]), small)
        bicubic = Image.fromarray(small).resize((28, 28), Image.Resampling.BICUBIC)
        assert np.array_equal(decode(body["bicubic_png_base64"]), np.asarray(bicubic))
        expected, bits, _ = upscale(
            tiny, torch.from_numpy(small)[None], factor, 3, labels=7, seeds=[11, 12, 13], particles=2
        )
        for k, item in enumerate(body["images"]):
            got = torch.from_numpy(decode(item["png_base64"]).copy())
            assert torch.equal(downscale(got, factor), torch.from_numpy(small))  # it agrees
            assert torch.equal(got, expected[k, 0])  # and it is the library's image for the seed
            assert item["seed"] == 11 + k and item["label"] == 7 and item["label_name"] == "sneaker"
            assert item["bits_per_dim"] == pytest.approx(float(bits[k]) / 784, abs=1e-4)


def test_one_png_by_default_with_the_classifiers_guess_as_label(client: httpx.Client, tiny: PixelCNN) -> None:
    small = small_image(7)
    files = {"image": ("s.png", png(small), "image/png")}
    r = client.post("/upscale", files=files, data={"n": "1", "seed": "4", "particles": "3"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = torch.from_numpy(decode(r.content).copy())
    assert got.shape == (28, 28) and torch.equal(downscale(got, 4), torch.from_numpy(small))
    guess = int(
        guess_from_small(load_classifier(DEFAULT_CLASSIFIER), torch.from_numpy(small)[None, None], 4)[0]
    )
    expected, _, _ = upscale(tiny, torch.from_numpy(small)[None], 4, 1, labels=guess, seeds=[4], particles=3)
    assert r.headers["x-labels"] == str(guess) and torch.equal(got, expected[0, 0])
    assert r.headers["x-seeds"] == "4"


def test_without_a_classifier_each_result_infers_its_label_and_reports_it(tiny: PixelCNN) -> None:
    small = small_image(7)
    files = {"image": ("s.png", png(small), "image/png")}
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"tiny": tiny})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/upscale", files=files, data={"n": "1", "seed": "4", "particles": "3"})
        assert r.status_code == 200, r.text
        _, _, labels = upscale(tiny, torch.from_numpy(small)[None], 4, 1, seeds=[4], particles=3)
        assert labels is not None and r.headers["x-labels"] == str(int(labels[0]))
        data = {"n": "4", "seed": "4", "particles": "2", "format": "json"}
        r = c.post("/upscale", files=files, data=data)
        assert all(item["label_name"] in FASHION_CLASSES for item in r.json()["images"])


def test_a_larger_image_with_a_factor_is_shrunk_with_downscale_first(client: httpx.Client) -> None:
    big = np.kron(small_image(7), np.ones((8, 8), dtype=np.uint8))  # 56x56: resized to 28x28 first
    files = {"image": ("b.png", png(big), "image/png")}
    r = client.post(
        "/upscale", files=files, data={"factor": "4", "n": "2", "particles": "2", "format": "json"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    shrunk = downscale(
        torch.from_numpy(np.asarray(Image.fromarray(big).resize((28, 28), Image.Resampling.BOX)).copy()), 4
    )
    assert np.array_equal(decode(body["small_png_base64"]), shrunk.numpy())
    for item in body["images"]:
        assert torch.equal(downscale(torch.from_numpy(decode(item["png_base64"]).copy()), 4), shrunk)


@pytest.mark.parametrize(
    "image, fields, status, message",
    [
        (np.zeros((10, 10), np.uint8), {}, 422, "matches no factor"),
        (np.zeros((28, 28), np.uint8), {}, 422, "give 'factor'"),
        (np.zeros((7, 14), np.uint8), {}, 422, "a 14x7 image"),
        (np.zeros((28, 28), np.uint8), {"factor": "3"}, 422, "factor must be 2, 4 or 7"),
        (np.zeros((7, 7), np.uint8), {"factor": "2"}, 422, "smaller than the 14x14"),
        (np.zeros((7, 7), np.uint8), {"n": "9"}, 422, "at most 8"),
        (np.zeros((7, 7), np.uint8), {"particles": "9"}, 422, "at most 8"),
        (np.zeros((7, 7), np.uint8), {"n": "5", "particles": "7"}, 422, "n * particles = 35"),
        (np.zeros((7, 7), np.uint8), {"n": "0"}, 422, "n"),
        (np.zeros((7, 7), np.uint8), {"label": "sandals please"}, 422, "sneaker"),
        (np.zeros((7, 7), np.uint8), {"temperature": "0"}, 422, "temperature"),
        (np.zeros((7, 7), np.uint8), {"seed": str(2**32 - 1), "n": "2"}, 422, "seed"),
        (np.zeros((7, 7), np.uint8), {"format": "gif"}, 422, "format"),
    ],
)
def test_bad_requests_get_clear_4xx_messages(
    client: httpx.Client, image: np.ndarray, fields: dict[str, str], status: int, message: str
) -> None:
    r = client.post("/upscale", files={"image": ("x.png", png(image), "image/png")}, data=fields)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_uploads_that_are_not_images_are_refused(client: httpx.Client) -> None:
    r = client.post("/upscale", files={"image": ("x.png", b"", "image/png")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/upscale", files={"image": ("x.txt", b"not an image at all", "text/plain")})
    assert r.status_code == 415 and "accepted format" in r.json()["detail"]
    r = client.post("/upscale", data={"n": "2"})
    assert r.status_code == 422 and "image" in r.json()["detail"]


def test_it_runs_on_the_worker_within_the_queue_limit(tiny: PixelCNN) -> None:
    app = create_app(Settings(max_queue=4), models={"tiny": tiny})
    with running_server(app) as url:
        files = {"image": ("s.png", png(small_image(7)), "image/png")}
        r = httpx.post(url + "/upscale", files=files, data={"n": "2", "particles": "3"}, timeout=60)
    assert r.status_code == 422 and "queue holds (4)" in r.json()["detail"]


def test_openapi_documents_the_route_its_fields_and_both_formats(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/upscale"]["post"]
    content = operation["responses"]["200"]["content"]
    assert "image/png" in content and "application/json" in content
    assert {"422", "413", "415", "503"} <= set(operation["responses"])
    assert "curl" in operation["description"] and "/upscale" in operation["description"]
    schema_name = content["application/json"]["schema"]["$ref"].split("/")[-1]
    fields = spec["components"]["schemas"][schema_name]["properties"]
    assert {"images", "factor", "small_png_base64", "bicubic_png_base64"} <= set(fields)


def test_the_readme_lists_the_route_with_each_fields_default() -> None:
    readme.test_the_readme_gives_each_fields_default("/upscale")
