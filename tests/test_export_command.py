"""``model.export`` as a newcomer meets it: a short run exports without flags, errors are one
line, scoring can be limited, the shipped file is not overwritten by accident, and the run's
own size and data are used. Every command refuses abbreviated flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import evaluate, export, sample, train
from model.checkpoint import load, read_metadata
from tests.own_data import NAMES, real_images

TINY = ["--channels", "16", "--layers", "2", "--head-channels", "16", "--no-samples", "--quiet"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 3 steps that ended no epoch (300 images, batch 32): no best.safetensors."""
    tmp = tmp_path_factory.mktemp("short")
    images, labels = real_images(300)
    np.savez(tmp / "set.npz", images=images, labels=labels, class_names=np.array(NAMES))
    run = tmp / "run"
    assert train.main(["--data", str(tmp / "set.npz"), "--max-steps", "3", "--run-dir", str(run), *TINY]) == 0
    assert not (run / "best.safetensors").exists()
    return run


def test_a_run_that_ended_no_epoch_exports_its_latest_weights_into_the_run_directory(
    short_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export.main(["--run-dir", str(short_run), "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "no epoch has ended yet" in out and "latest EMA weights" in out
    written = short_run / "model.safetensors"
    assert load(written).config.class_names == NAMES
    assert (short_run / "model-samples.png").is_file() and (short_run / "model-completions.png").is_file()
    assert json.loads(read_metadata(written)["steps"]) == 3


def test_limit_zero_scores_nothing(short_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "unscored.safetensors"
    assert export.main(["--run-dir", str(short_run), "--out", str(out), "--limit", "0", "--no-pictures"]) == 0
    meta = read_metadata(out)
    assert "test_bits_per_dim" not in meta and "validation_bits_per_dim" not in meta


def test_a_file_in_a_weights_folder_needs_force(
    short_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "weights" / "pixelcnn.safetensors"
    shipped.parent.mkdir()
    shipped.write_bytes(b"the shipped file")
    args = ["--run-dir", str(short_run), "--out", str(shipped), "--limit", "0", "--no-pictures"]
    assert export.main(args) == 2
    assert "pass --force" in capsys.readouterr().err and shipped.read_bytes() == b"the shipped file"
    assert export.main([*args, "--force"]) == 0
    assert load(shipped).config.class_names == NAMES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-dir", "nowhere"], "not a training run"),
        (["--run-dir", "{tmp}", "--out", "{tmp}"], "is a directory"),
    ],
)
def test_export_errors_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export.main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_export_and_evaluate_use_the_runs_own_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["--image-size", "14", "--train-limit", "64", "--max-steps", "2", "--run-dir", str(run)]
    assert train.main(args + TINY) == 0  # Fashion-MNIST, the default data
    assert export.main(["--run-dir", str(run), "--limit", "20", "--no-pictures"]) == 0
    weights = run / "model.safetensors"
    assert load(weights).config.image_size == 14
    capsys.readouterr()
    assert evaluate.main(["--weights", str(weights), "--limit", "20"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 20


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (train.main, ["--dat", "somewhere"]),
        (export.main, ["--run", "somewhere"]),
        (evaluate.main, ["--weight", "x.safetensors"]),
        (sample.main, ["--weight", "x.safetensors"]),
    ],
)
def test_abbreviated_flags_are_refused(
    command: object, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        command(args)  # type: ignore[operator]
    err = capsys.readouterr().err  # the abbreviation is no flag: unrecognised, or a required one missing
    assert stop.value.code == 2 and ("unrecognized arguments" in err or "are required" in err), err
