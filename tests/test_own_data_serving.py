"""A model trained on a folder of images, at 16 x 16 and 32 x 32, served by a real uvicorn
server: every route answers at that size, with the folder's class names."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model import export, train
from model.inference.superres import downscale
from tests.own_data import NAMES, png_bytes, real_images, write_split_folder
from tests.server import running_server

STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module", params=[16, 32])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, int]]:
    size = int(request.param)
    tmp = tmp_path_factory.mktemp(f"own{size}")
    folder = write_split_folder(tmp / "clothes", 200, 30)
    run, weights = tmp / "run", tmp / "mine.safetensors"
    tiny = ["--channels", "16", "--layers", "2", "--head-channels", "16", "--no-samples", "--quiet"]
    args = ["--data", str(folder), "--image-size", str(size), "--max-steps", "30", "--run-dir", str(run)]
    assert train.main(args + tiny + ["--batch-size", "32", "--warmup-steps", "5", "--lr", "3e-3"]) == 0
    assert export.main(["--run-dir", str(run), "--out", str(weights), "--limit", "20", "--no-pictures"]) == 0
    settings = Settings(weights=weights, max_batch_delay_ms=5)
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, size


def pixels(png_base64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64))))


def test_the_model_describes_its_size_and_the_folders_class_names(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    info = client.get("/model").json()
    assert info["image_size"] == size and info["classes"] == list(NAMES)
    assert info["upscale_factors"] == [f for f in (2, 4, 8) if size // f >= 3]
    assert "16x16" in info["training"]["data"] or "32x32" in info["training"]["data"]


def test_generate_takes_a_label_by_name_and_names_it(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    r = client.post("/generate", json={"n": 2, "seed": 3, "label": "Sneakers", "format": "json"})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert [(i["label"], i["label_name"]) for i in images] == [(NAMES.index("sneaker"), "sneaker")] * 2
    assert pixels(images[0]["png_base64"]).shape == (size, size)
    assert r.headers["x-labels"] == f"{NAMES.index('sneaker')},{NAMES.index('sneaker')}"
    wrong = client.post("/generate", json={"label": "t-shirt"})
    assert wrong.status_code == 422 and "sandal" in wrong.json()["detail"]


def test_a_streamed_generation_sends_each_row_then_the_body(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    body = {"n": 1, "seed": 4, "label": "trouser", "format": "json"}
    plain = client.post("/generate", json=body)
    with client.stream("POST", "/generate", json=body, headers=STREAM) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [line.split(":", 1)[1].strip() for line in response.iter_lines() if line.startswith("event:")]
    assert names == ["progress"] * size + ["result"]
    assert plain.json()["images"][0]["label_name"] == "trouser"


def test_complete_keeps_the_known_pixels(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    image = np.asarray(Image.fromarray(real_images(1, offset=250)[0][0]).resize((size, size)))
    form = {"box": f"0,0,{size},{size // 2}", "n": "2", "seed": "1", "particles": "2", "format": "json"}
    r = client.post("/complete", files={"image": ("x.png", png_bytes(image))}, data=form)
    assert r.status_code == 200, r.text
    for item in r.json()["images"]:
        filled = pixels(item["png_base64"])
        assert filled.shape == (size, size) and item["label_name"] in NAMES
        assert np.array_equal(filled[size // 2 :], image[size // 2 :])


def test_likelihood_scores_every_pixel_with_the_class_posterior(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    image = np.asarray(Image.fromarray(real_images(1, offset=251)[0][0]).resize((size, size)))
    r = client.post("/likelihood", files={"image": ("x.png", png_bytes(image))}, data={"format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert np.array(body["bits"]).shape == (size, size) and set(body["class_posterior"]) == set(NAMES)
    heat = client.post("/likelihood", files={"image": ("x.png", png_bytes(image))}, data={"format": "png"})
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"


def test_compress_and_decompress_round_trip_exactly(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    for array in real_images(2, offset=252)[0]:
        image = np.asarray(Image.fromarray(array).resize((size, size)))
        r = client.post("/compress", files={"image": ("x.png", png_bytes(image))})
        assert r.status_code == 200, r.text
        octet = {"content-type": "application/octet-stream"}
        back = client.post("/decompress", content=r.content, headers=octet)
        assert back.status_code == 200, back.text
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(back.content))), image)


def test_upscale_results_agree_with_the_small_image(served: tuple[httpx.Client, int]) -> None:
    client, size = served
    small = np.asarray(Image.fromarray(real_images(1, offset=253)[0][0]).resize((size // 2, size // 2)))
    form = {"n": "2", "seed": "2", "particles": "2", "format": "json", "label": "sandal"}
    r = client.post("/upscale", files={"image": ("s.png", png_bytes(small))}, data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["factor"] == 2 and r.headers["x-factor"] == "2"
    for item in body["images"]:
        big = torch.from_numpy(pixels(item["png_base64"]).copy()).view(1, 1, size, size)
        assert torch.equal(downscale(big.long(), 2)[0, 0], torch.from_numpy(small.astype(np.int64)))
        assert item["label_name"] == "sandal"
    too_far = client.post("/upscale", files={"image": ("s.png", png_bytes(small))}, data={"factor": "7"})
    assert too_far.status_code == 422 and "factor must be" in too_far.json()["detail"]
    with client.stream(
        "POST", "/upscale", files={"image": ("s.png", png_bytes(small))}, data=form, headers=STREAM
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert json.loads(lines[-1].split(":", 1)[1]) == body  # the streamed variant ends with the same body
