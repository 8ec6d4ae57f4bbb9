"""bench.compression runs end to end and reports speed per container size beside bits/dim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.compression import main
from model.checkpoint import save
from tests.conftest import random_model


def test_the_benchmark_reports_speed_and_size_per_container_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "tiny.safetensors"
    save(random_model("gated", 10, size=8, channels=8, layers=2, seed=1), weights)
    assert main(["--weights", str(weights), "--limit", "5", "--sizes", "1,2"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary["speed"]) == {"1", "2"}
    for size in ("1", "2"):
        assert summary["exact"][size] == 5
        assert summary["speed"][size]["encode_images_per_s"] > 0
        assert summary["speed"][size]["decode_images_per_s"] > 0
    sizes = summary["bytes_per_image"]
    assert sizes["ours, 2 per container"] < sizes["ours, 1 per container"]  # one header per 2 images
    assert "codec speed" in out
    assert summary["labels"] == "fewest bits"  # the classifier reads 28x28 images of 256 levels


def test_a_model_the_classifier_fits_is_labelled_by_its_guesses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "tiny28.safetensors"
    save(random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=1), weights)
    assert main(["--weights", str(weights), "--limit", "3", "--sizes", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["labels"] == "the classifier's guesses" and summary["exact"]["3"] == 3
    assert main(["--weights", str(weights), "--limit", "3", "--sizes", "3", "--fewest-bits"]) == 0
    fewest = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fewest["labels"] == "fewest bits" and fewest["exact"]["3"] == 3
