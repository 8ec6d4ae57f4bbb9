"""bench.upscale runs end to end on real test images: every sample agrees, figures per factor."""

from __future__ import annotations

import json
from pathlib import Path

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
