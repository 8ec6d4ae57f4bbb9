"""Training on real Fashion-MNIST: the loss falls, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError, file_sha256, load, save
from model.data import FASHION_CLASSES
from model.network.pixelcnn import PixelCNNConfig
from model.training import Trainer, TrainSettings, lr_factor, open_run

TINY = PixelCNNConfig(arch="gated", channels=8, layers=2, num_classes=10, head_channels=16)
NAMED = dataclasses.replace(TINY, class_names=FASHION_CLASSES)  # the data set names the labels
ROOT = Path(__file__).resolve().parents[1]


def settings(run_dir: Path, **overrides: object) -> TrainSettings:
    base = {
        "model": TINY,
        "run_dir": str(run_dir),
        "epochs": 2,
        "batch_size": 16,
        "lr": 3e-3,
        "warmup_steps": 5,
        "train_limit": 320,
        "val_limit": 64,
        "samples_per_epoch": False,
        "checkpoint_minutes": 100.0,
    }
    base.update(overrides)
    return TrainSettings(**base)  # type: ignore[arg-type]


def test_loss_falls_over_two_hundred_steps(tmp_path: Path) -> None:
    trainer = Trainer(settings(tmp_path, epochs=10, train_limit=640, log_every=10, max_steps=200))
    trainer.run(progress=False)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [row["bits_per_dim"] for row in log if row["kind"] == "train"]
    val = [row["bits_per_dim"] for row in log if row["kind"] == "validation"]
    assert train[-1] < train[0] - 1.0, train
    assert val[-1] < val[0], val
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    assert load(tmp_path / "best.safetensors").config == NAMED


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path: Path) -> None:
    straight = Trainer(settings(tmp_path / "straight"))
    straight.run(progress=False)
    # Stop mid-epoch after 13 steps, then continue in a fresh trainer.
    first = open_run(settings(tmp_path / "resumed", max_steps=13), resume=False)
    first.run(progress=False)
    assert first.step == 13
    second = open_run(settings(tmp_path / "resumed"), resume=True)
    assert second.step == 13 and second.batch_in_epoch == 13
    second.run(progress=False)
    assert second.step == straight.step == 40
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.state_dict().values(), second.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    open_run(settings(tmp_path, max_steps=2), resume=False).run(progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        open_run(settings(tmp_path), resume=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        open_run(settings(tmp_path / "empty"), resume=True)


def test_a_run_can_start_from_a_weights_file(tmp_path: Path) -> None:
    first = open_run(settings(tmp_path / "first", max_steps=20), resume=False)
    first.run(progress=False)
    start = tmp_path / "start.safetensors"
    save(first.ema, start)
    other = PixelCNNConfig(arch="pixelcnn", channels=4, layers=1, num_classes=None)
    tuned_settings = settings(tmp_path / "tuned", model=other, init_from=str(start), max_steps=3)
    tuned = open_run(tuned_settings, resume=False)
    # The file's architecture wins over the settings', and both copies start from its weights.
    assert tuned.settings.model == NAMED and tuned.settings.init_sha256 == file_sha256(start)
    for key, value in load(start).state_dict().items():
        assert torch.equal(tuned.model.state_dict()[key], value)
        assert torch.equal(tuned.ema.state_dict()[key], value)
    tuned.run(progress=False)
    assert tuned.step == 3
    assert json.loads((tmp_path / "tuned" / "settings.json").read_text())["init_from"] == str(start)
    resumed = open_run(settings(tmp_path / "tuned", model=other), resume=True)
    assert resumed.settings.model == NAMED and resumed.step == 3
    not_weights = str(tmp_path / "tuned" / "settings.json")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        open_run(settings(tmp_path / "bad", init_from=not_weights), resume=False)


def test_a_gated_file_grows_into_gated_attention_that_starts_as_the_same_model(tmp_path: Path) -> None:
    first = open_run(settings(tmp_path / "first", max_steps=10), resume=False)
    first.run(progress=False)
    start = tmp_path / "start.safetensors"
    save(first.ema, start)
    wanted = PixelCNNConfig(arch="gated-attention", attention_every=1, attention_heads=2)
    grown = open_run(
        settings(
            tmp_path / "grown", model=wanted, init_from=str(start), grow_to="gated-attention", max_steps=3
        ),
        resume=False,
    )
    # The file's layers and sizes, the requested attention blocks; attention starts as the identity.
    assert grown.settings.model.arch == "gated-attention" and grown.settings.model.channels == TINY.channels
    assert grown.settings.model.attention_after == (0,)
    x = torch.randint(0, 256, (2, 1, 28, 28))
    y = torch.tensor([1, 7])
    with torch.no_grad():
        assert torch.allclose(grown.model.eval()(x, y), load(start)(x, y), atol=1e-5)
    grown.run(progress=False)
    assert grown.step == 3
    with pytest.raises(ValueError, match="cannot start from"):
        open_run(settings(tmp_path / "shrunk", init_from=str(start), grow_to="pixelcnn"), resume=False)


def test_a_gated_attention_file_grows_more_attention_blocks_and_keeps_its_own(tmp_path: Path) -> None:
    four_layers = dataclasses.replace(TINY, arch="gated-attention", layers=4, attention_every=2)
    first = open_run(settings(tmp_path / "first", model=four_layers, max_steps=10), resume=False)
    first.run(progress=False)
    start = tmp_path / "start.safetensors"
    save(first.ema, start)
    assert load(start).config.attention_after == (1,)
    wanted = PixelCNNConfig(arch="gated-attention", attention_every=1, attention_heads=2)
    grown = open_run(
        settings(
            tmp_path / "grown", model=wanted, init_from=str(start), grow_to="gated-attention", max_steps=2
        ),
        resume=False,
    )
    assert grown.settings.model.attention_after == (0, 1, 2) and grown.settings.model.layers == 4
    # The file's block after layer 1 keeps its weights; the new ones start as the identity.
    kept = load(start).attention["1"].state_dict()
    assert all(torch.equal(t, grown.model.attention["1"].state_dict()[k]) for k, t in kept.items())
    x = torch.randint(0, 256, (2, 1, 28, 28))
    y = torch.tensor([2, 5])
    with torch.no_grad():
        assert torch.allclose(grown.model.eval()(x, y), load(start)(x, y), atol=1e-5)
    grown.run(progress=False)
    assert grown.step == 2
    # Fewer blocks would drop the file's own: refused with what to choose instead.
    fewer = PixelCNNConfig(arch="gated-attention", attention_every=3, attention_heads=2)
    with pytest.raises(ValueError, match="would drop or reshape"):
        open_run(
            settings(tmp_path / "fewer", model=fewer, init_from=str(start), grow_to="gated-attention"),
            resume=False,
        )


def test_sigterm_saves_a_checkpoint_first(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "model.train",
        "--run-dir",
        str(run_dir),
        "--channels",
        "8",
        "--layers",
        "2",
        "--head-channels",
        "16",
        "--epochs",
        "50",
        "--batch-size",
        "16",
        "--train-limit",
        "320",
        "--val-limit",
        "32",
        "--no-samples",
        "--quiet",
        "--checkpoint-minutes",
        "100",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (run_dir / "metrics.jsonl").exists(), "training never started"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["step"] > 0
    resumed = subprocess.run(
        [*cmd, "--resume", "--epochs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at epoch" in resumed.stdout


def test_learning_rate_warms_up_then_decays() -> None:
    s = settings(Path("unused"), warmup_steps=10)
    factors = [lr_factor(step, s, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[99] == pytest.approx(s.min_lr_ratio, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
