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
