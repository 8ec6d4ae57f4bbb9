"""bench.upscale runs end to end on real test images, grayscale and colour: every sample agrees,
figures per factor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.upscale import main
from model.checkpoint import save
from tests.conftest import random_model


@pytest.mark.parametrize("labels", ["bicubic", "true", "infer"])
def test_the_benchmark_reports_agreement_and_quality_per_factor(
    labels: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "tiny.safetensors"
    save(random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=1), weights)
    picture = tmp_path / "rows.png"
    argv = ["--weights", str(weights), "--limit", "2", "--factors", "7", "--samples", "4"]
    assert main([*argv, "--labels", labels, "--picture", str(picture)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["factor"] for r in summary["results"]] == [7]
    for r in summary["results"]:
        assert r["agreement_pct"] == 100.0
        assert (
            0 < r["psnr_bicubic"] < 100
            and -1 <= r["ssim_mean"] <= 1
            and r["bpd_sample"] > 0
            and r["bpd_samples"] > 0
        )
        if labels == "true":
            assert r["label_accuracy_pct"] == 100.0
    # Rows of small, bicubic, four samples and truth (7 cells with 2-pixel borders), at scale 3.
    assert Image.open(picture).size[0] == (7 * (28 + 2) + 2) * 3


def write_colour_folder(root: Path, train: int, test: int, size: int) -> Path:
    """``root/train/*.png`` and ``root/test/*.png``: smooth RGB images (no classes)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.0, 1.0, size)
    for part, count in (("train", train), ("test", test)):
        (root / part).mkdir(parents=True)
        for k in range(count):
            low, high = rng.uniform(0, 255, (2, 3))
            mix = (ramp[:, None] + ramp[None, :])[..., None] / 2  # (size, size, 1)
            image = (low + (high - low) * mix).round().astype(np.uint8)
            Image.fromarray(image).save(root / part / f"{k:03d}.png")
    return root


def test_the_benchmark_upscales_colour_images_of_own_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "colour.safetensors"
    model = random_model("gated", None, size=12, levels=256, channels=8, layers=2, seed=2, image_channels=3)
    save(model, weights)
    data = write_colour_folder(tmp_path / "colours", train=4, test=2, size=12)
    picture = tmp_path / "rows.png"
    argv = ["--weights", str(weights), "--data", str(data), "--limit", "2", "--samples", "4"]
    assert main([*argv, "--particles", "2", "--picture", str(picture)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    # The model's own factors (12x12: small images of 6x6, 4x4 and 3x3), unconditional.
    assert [r["factor"] for r in summary["results"]] == [2, 3, 4]
    assert summary["data"] == "colours" and summary["settings"]["labels_used"] is None
    for r in summary["results"]:
        assert r["agreement_pct"] == 100.0  # every colour of every block
        assert 0 < r["psnr_bicubic"] < 100 and 0 < r["psnr_sample"] < 100
        assert all(-1 <= r[k] <= 1 for k in ("ssim_sample", "ssim_mean", "ssim_bicubic", "ssim_nearest"))
        assert all(r[k] > 0 for k in ("bpd_sample", "bpd_samples", "bpd_bicubic", "bpd_truth"))
        assert math.isnan(r["label_accuracy_pct"])
    drawn = Image.open(picture)
    assert drawn.mode == "RGB" and drawn.size == ((7 * (12 + 2) + 2) * 3, (3 * 2 * (12 + 2) + 2) * 3)
    # A source without a test split: model.evaluate's message, and nothing run.
    (data / "test").rename(tmp_path / "elsewhere")
    (data / "train").rename(tmp_path / "flat")
    assert main(["--weights", str(weights), "--data", str(tmp_path / "flat")]) == 2
    assert "has no test split" in capsys.readouterr().err
