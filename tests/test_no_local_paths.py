"""What users read holds training facts, never the training machine's paths or command lines:
the shipped weights' metadata, ``GET /model`` and every JSON ``/generate`` response."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from app.main import create_app
from app.models.served import describe
from app.settings import Settings
from model.checkpoint import load, read_metadata, save
from model.network.pixelcnn import PixelCNN
from tests.conftest import SHIPPED_WEIGHTS, random_model
from tests.server import running_server

# An absolute path: a slash that starts a word, followed by at least one more folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w.-]+/[\w./-]*")
HISTORY_KEYS = ("run_dir", "init_from", "command", "data_dir")


def assert_no_local_paths(text: str) -> None:
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.findall(text)
    for key in HISTORY_KEYS:
        assert f'"{key}"' not in text, key


def test_the_shipped_weights_metadata_holds_facts_but_no_paths(shipped_model: PixelCNN) -> None:
    metadata = read_metadata(SHIPPED_WEIGHTS)
    assert not set(HISTORY_KEYS) & set(metadata)
    assert_no_local_paths(json.dumps(metadata))
    started = json.loads(metadata["started_from"])
    assert len(started["sha256"]) == 64 and started["steps"] > 0
    assert json.loads(metadata["settings"])["lr"] > 0
    assert_no_local_paths(
        describe("fmnist", shipped_model.config, metadata, SHIPPED_WEIGHTS.name, "").model_dump_json()
    )


def test_model_info_and_json_responses_show_only_allowed_facts(tmp_path: Path) -> None:
    # A weights file that holds everything an older export wrote, paths and command included.
    weights = tmp_path / "leaky.safetensors"
    save(
        random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=2),
        weights,
        steps=120,
        epochs=2,
        data="Fashion-MNIST train split",
        hardware="x86_64 CPU, 2 threads",
        command="python -m model.train --run-dir /work/runs/gated --init-from /work/runs/start.safetensors",
        settings={"lr": 0.001, "run_dir": "/work/runs/gated", "init_from": "/home/me/start.safetensors"},
        started_from={"sha256": "ab" * 32, "steps": 100, "path": "/work/runs/start.safetensors"},
        notes="trained in /home/me/pixelcnn",
        hardware_detail="a text naming ~/secrets",
    )
    load(weights)
    app = create_app(Settings(weights=weights, max_batch_delay_ms=2))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        info = client.get("/model")
        generated = client.post("/generate", json={"n": 1, "seed": 3, "format": "json"})
    assert info.status_code == 200 and generated.status_code == 200, generated.text
    for response in (info, generated):
        assert_no_local_paths(response.text)
        assert "~/" not in response.text
    training = info.json()["training"]
    assert training == {
        "data": "Fashion-MNIST train split",
        "epochs": 2,
        "steps": 120,
        "hardware": "x86_64 CPU, 2 threads",
        "settings": {"lr": 0.001},
        "started_from": {"sha256": "ab" * 32, "steps": 100},
    }
    assert generated.json()["model"]["training"] == training
    assert info.json()["weights"] == "leaky.safetensors"
