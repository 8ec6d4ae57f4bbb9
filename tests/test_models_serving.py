"""Several models in one service (a directory of weights files), served by a real uvicorn on
127.0.0.1: each answers with its own shape and class names, requests are batched per model,
files are replaced under load without a 5xx or a mixed-up answer, a damaged file is refused
while the weights before it keep serving, and one model in memory at a time still works."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.checkpoint import file_sha256, save
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ("red", "green", "blue")


def fashion(seed: int = 0) -> PixelCNN:
    """A grayscale 12x12 model with Fashion-MNIST's class names."""
    return random_model("gated", 10, size=12, levels=16, channels=8, layers=2, seed=seed)


def swatches(seed: int = 1) -> PixelCNN:
    """An RGB 8x8 model with three classes of its own."""
    return random_model(
        "gated", 3, size=8, levels=16, channels=8, layers=2, seed=seed, class_names=COLOURS, image_channels=3
    )


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A model repository: two models and a file that is not a model (the label classifier)."""
    folder = tmp_path / "models"
    folder.mkdir()
    save(fashion(), folder / "fashion.safetensors")
    save(swatches(), folder / "swatches.safetensors")
    shutil.copy(ROOT / "weights" / "fmnist-classifier.safetensors", folder)
    (folder / "README.md").write_text("not a model either")
    return folder


def serve(folder: Path | str, **settings: Any) -> AbstractContextManager[str]:
    options = {"weights": str(folder), "max_batch_delay_ms": 30, "classifier": None, **settings}
    return running_server(create_app(Settings(**options)))


def png_size(data: bytes) -> tuple[str, tuple[int, int]]:
    picture = Image.open(io.BytesIO(data))
    return picture.mode, picture.size


def generate(c: httpx.Client, model: str | None, seed: int = 0, **fields: object) -> httpx.Response:
    body = {"n": 1, "seed": seed, "label": 0, **fields}
    if model is not None:
        body["model"] = model
    return c.post("/generate", json=body)


def test_each_model_answers_with_its_own_shape_and_class_names(repository: Path) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=60) as c:
        listing = c.get("/models").json()
        assert [m["name"] for m in listing] == ["fashion", "swatches"]  # no classifier, no README
        assert [m["default"] for m in listing] == [True, False]
        assert listing[1]["loaded"] is False  # loads on first use
        sha = file_sha256(repository / "swatches.safetensors")
        info = c.get("/models/swatches").json()
        assert (info["image_size"], info["image_channels"], info["classes"]) == (8, 3, list(COLOURS))
        assert info["sha256"] == sha and info["name"] == "swatches"
        assert c.get("/model").json()["name"] == "fashion"

        r = generate(c, None)
        assert r.status_code == 200 and r.headers["X-Model"].startswith("fashion@")
        assert png_size(r.content) == ("L", (12, 12))
        r = generate(c, "swatches", label="blue")
        assert r.status_code == 200, r.text
        assert r.headers["X-Model"] == f"swatches@{sha[:12]}" and r.headers["X-Labels"] == "2"
        assert png_size(r.content) == ("RGB", (8, 8))
        assert c.get("/models").json()[1]["loaded"] is True
        # The same model through Ray Serve's routing header, which uvicorn accepts too.
        r = c.post("/generate", json={"n": 1, "seed": 0}, headers={"serve_multiplexed_model_id": "swatches"})
        assert r.headers["X-Model"].startswith("swatches@")
        bad = c.post(
            "/generate", json={"model": "fashion"}, headers={"serve_multiplexed_model_id": "swatches"}
        )
        assert bad.status_code == 400 and "disagree" in bad.json()["detail"]

        # A class name of one model is not a class of the other.
        wrong = generate(c, "swatches", label="sneaker")
        assert wrong.status_code == 422 and "red" in wrong.json()["detail"]
        unknown = generate(c, "nope")
        assert unknown.status_code == 404
        assert "fashion" in unknown.json()["detail"] and "swatches" in unknown.json()["detail"]
        assert c.get("/models/nope").status_code == 404

        # Multipart routes take the model as a form field, and read uploads in its colours.
        picture = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(picture, format="PNG")
        upload = {"image": ("x.png", picture.getvalue(), "image/png")}
        scored = c.post("/likelihood", files=upload, data={"model": "swatches"})
        assert scored.status_code == 200 and scored.headers["X-Model"].startswith("swatches@")
        assert len(scored.json()["channel_bits"]) == 3
        done = c.post(
            "/complete", files=upload, data={"model": "swatches", "box": "0,0,8,4", "n": 1, "particles": 2}
        )
        assert done.status_code == 200 and png_size(done.content) == ("RGB", (8, 8))
        big = c.post("/upscale", files=upload, data={"model": "fashion", "factor": 2, "n": 1, "particles": 2})
        assert big.status_code == 200 and png_size(big.content) == ("L", (12, 12))
        streamed = c.post(
            "/generate", json={"n": 1, "model": "swatches"}, headers={"Accept": "text/event-stream"}
        )
        assert streamed.headers["X-Model"].startswith("swatches@") and "event: result" in streamed.text


def test_a_container_names_the_model_that_decodes_it(repository: Path) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=60) as c:
        pixels = (np.arange(192) % 16 * 16 + 8).astype(np.uint8).reshape(8, 8, 3)  # 16 levels: exact
        picture = io.BytesIO()
        Image.fromarray(pixels).save(picture, format="PNG")
        packed = c.post(
            "/compress", files={"image": ("x.png", picture.getvalue())}, data={"model": "swatches"}
        )
        assert packed.status_code == 200 and packed.headers["X-Model"].startswith("swatches@")
        data = packed.content
        wrong = c.post("/decompress", files={"data": ("d", data)}, data={"model": "fashion"})
        assert wrong.status_code == 400 and "model 'swatches'" in wrong.json()["detail"]
        # Naming no model: the one whose weights made the data decodes it, raw bodies too.
        for answer in (
            c.post("/decompress", files={"data": ("d", data)}),
            c.post("/decompress", content=data, headers={"Content-Type": "application/octet-stream"}),
        ):
            assert answer.status_code == 200 and answer.headers["X-Model"].startswith("swatches@")
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), pixels)


def test_concurrent_mixed_requests_are_right_and_batched_per_model(repository: Path) -> None:
    with serve(repository) as url, httpx.Client(base_url=url, timeout=120) as c:
        alone = {name: generate(c, name, seed=7).content for name in ("fashion", "swatches")}

        def ask(k: int) -> tuple[str, httpx.Response]:
            name = ("fashion", "swatches")[k % 2]
            return name, generate(c, name, seed=7)

        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(ask, range(40)))
        for name, r in answers:
            assert r.status_code == 200 and r.headers["X-Model"].startswith(f"{name}@")
            assert r.content == alone[name]  # the same bytes as alone: merged batches change nothing
        metrics = c.get("/metrics").text
        for name in ("fashion", "swatches"):
            batches = [
                line
                for line in metrics.splitlines()
                if line.startswith(f'pixelcnn_batch_images_count{{model="{name}"}}')
            ]
            # 21 requests each (1 alone + 20 concurrent): merged, they took fewer batches.
            assert batches and float(batches[0].split()[-1]) < 21, batches


def replace(path: Path, model: PixelCNN) -> None:
    """Write new weights over ``path`` atomically, as an operator's copy should."""
    save(model, path)


def test_a_file_replaced_under_load_gives_old_or_new_answers_and_no_5xx(repository: Path) -> None:
    path = repository / "fashion.safetensors"
    old_tag = f"fashion@{file_sha256(path)[:12]}"
    with serve(repository) as url, httpx.Client(base_url=url, timeout=120) as c:
        expected = {old_tag: generate(c, "fashion", seed=3).content}
        stop = False

        def keep_asking(_: int) -> list[httpx.Response]:
            answers = []
            while not stop or not answers:
                answers.append(generate(c, "fashion", seed=3))
            return answers

        with ThreadPoolExecutor(6) as pool:
            running = [pool.submit(keep_asking, k) for k in range(6)]
            replace(path, fashion(seed=9))
            report = c.post("/admin/reload").json()
            assert report["replaced"] == ["fashion"] and not report["refused"]
            new_tag = f"fashion@{file_sha256(path)[:12]}"
            expected[new_tag] = generate(c, "fashion", seed=3).content
            stop = True
            answers = [r for future in running for r in future.result()]
        assert expected[old_tag] != expected[new_tag]
        tags = {r.headers["X-Model"] for r in answers}
        assert tags <= {old_tag, new_tag}, tags
        for r in answers:
            assert r.status_code == 200 and r.content == expected[r.headers["X-Model"]]
        assert generate(c, "fashion", seed=3).headers["X-Model"] == new_tag


def test_a_damaged_replacement_is_refused_and_the_old_weights_keep_serving(repository: Path) -> None:
    path = repository / "fashion.safetensors"
    tag = f"fashion@{file_sha256(path)[:12]}"
    with serve(repository) as url, httpx.Client(base_url=url, timeout=60) as c:
        before = generate(c, "fashion", seed=4).content
        damaged = bytearray(path.read_bytes())
        damaged[-100:] = bytes(100)  # the tensors' checksum no longer matches
        tmp = path.with_name(".fashion.tmp")
        tmp.write_bytes(bytes(damaged))
        os.replace(tmp, path)
        save(fashion(seed=5), repository / "added.safetensors")
        report = c.post("/admin/reload").json()
        assert "checksum" in report["refused"]["fashion"] and report["added"] == ["added"]
        r = generate(c, "fashion", seed=4)
        assert r.status_code == 200 and r.headers["X-Model"] == tag and r.content == before
        listed = {m["name"]: m for m in c.get("/models").json()}
        assert "checksum" in listed["fashion"]["reload_error"] and listed["fashion"]["error"] is None
        assert generate(c, "added").status_code == 200
        (repository / "added.safetensors").unlink()
        assert c.post("/admin/reload").json()["removed"] == ["added"]
        assert generate(c, "added").status_code == 404


def test_a_damaged_file_at_startup_is_listed_and_the_others_serve(repository: Path) -> None:
    (repository / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with serve(repository) as url, httpx.Client(base_url=url, timeout=60) as c:
        listed = {m["name"]: m for m in c.get("/models").json()}
        assert listed["broken"]["error"] and listed["broken"]["info"] is None
        r = generate(c, "broken")
        assert r.status_code == 503 and "broken" in r.json()["detail"]
        assert generate(c, "swatches").status_code == 200


def test_one_model_in_memory_at_a_time_with_alternating_requests(repository: Path) -> None:
    with serve(repository, max_loaded_models=1) as url, httpx.Client(base_url=url, timeout=120) as c:
        first = {name: generate(c, name, seed=2).content for name in ("fashion", "swatches")}
        for k in range(6):
            name = ("fashion", "swatches")[k % 2]
            r = generate(c, name, seed=2)
            assert r.status_code == 200 and r.content == first[name]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda k: generate(c, ("fashion", "swatches")[k % 2], seed=2), range(16)))
        assert all(r.status_code == 200 for r in answers)
        assert all(r.content == first[r.headers["X-Model"].split("@")[0]] for r in answers)
        loaded = [m["name"] for m in c.get("/models").json() if m["loaded"]]
        assert len(loaded) == 1


def test_the_shipped_weights_folder_is_a_model_repository() -> None:
    classifier = ROOT / "weights" / "fmnist-classifier.safetensors"
    with serve(ROOT / "weights", classifier=classifier) as url, httpx.Client(base_url=url, timeout=60) as c:
        listing = {m["name"]: m for m in c.get("/models").json()}
        assert sorted(listing) == ["pixelcnn-gated-emoji16", "pixelcnn-gated-fmnist"]
        emoji = listing["pixelcnn-gated-emoji16"]["info"]
        assert (emoji["image_size"], emoji["image_channels"]) == (16, 3)
        assert listing["pixelcnn-gated-fmnist"]["info"]["classes"][7] == "sneaker"
        assert listing["pixelcnn-gated-fmnist"]["info"]["test_bits_per_dim"] < 2.9


def test_sighup_reloads_the_models_of_python_m_app(repository: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PIXELCNN_WEIGHTS": str(repository),
        "PIXELCNN_CLASSIFIER": "",
        "PIXELCNN_TORCH_THREADS": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "python -m app did not start"
                time.sleep(0.2)
            path = repository / "swatches.safetensors"
            replace(path, swatches(seed=8))
            server.send_signal(signal.SIGHUP)
            new = file_sha256(path)
            while c.get("/models/swatches").json()["sha256"] != new:
                assert time.monotonic() < deadline + 30, "SIGHUP did not reload the file"
                time.sleep(0.1)
            assert generate(c, "swatches").headers["X-Model"] == f"swatches@{new[:12]}"
            assert server.poll() is None  # still serving
    finally:
        server.terminate()
        server.wait(timeout=30)
