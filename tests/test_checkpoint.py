"""Weights files: a save/load round trip gives the same logits; bad files give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model.checkpoint import CheckpointError, load, read_metadata, save
from tests.conftest import random_model


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_round_trip_gives_the_same_logits_and_keeps_metadata(tmp_path: Path, arch: str) -> None:
    model = random_model(arch)
    path = tmp_path / "m.safetensors"
    save(model, path, epochs=3, validation_bits_per_dim=2.9, data="fashion-mnist")
    loaded = load(path)
    assert loaded.config == model.config
    assert not loaded.training
    x = torch.randint(0, 16, (2, 1, 10, 10))
    y = torch.tensor([1, 7])
    assert torch.equal(loaded(x, y), model(x, y))
    meta = read_metadata(path)
    assert json.loads(meta["epochs"]) == 3 and meta["data"] == "fashion-mnist"


def test_the_file_is_plain_safetensors_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save(random_model("gated"), path)
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "pixelcnn-weights/1"
    assert b"\x80\x04" not in raw[:16]  # no pickle protocol marker at the start


def test_truncated_corrupted_and_foreign_files_are_rejected(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save(random_model("gated"), good)
    raw = good.read_bytes()
    cases = {
        "missing.safetensors": None,
        "truncated.safetensors": raw[: len(raw) // 2],
        "tiny.safetensors": raw[:5],
        "garbage.safetensors": b"\xff" * 64,
        "bad_header.safetensors": raw[:8] + b"x" + raw[9:],
        "flipped.safetensors": raw[:-7] + bytes([raw[-7] ^ 0x10]) + raw[-6:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load(path)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a pixelcnn-weights"):
        load(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"w": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError):
        load(pickled)


def test_nan_weights_are_rejected(tmp_path: Path) -> None:
    model = random_model("gated")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.safetensors"
    save(model, path)
    with pytest.raises(CheckpointError, match="NaN"):
        load(path)
