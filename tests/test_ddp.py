"""Training under torchrun: 2 processes over loopback train the same weights as one process.

The global batches do not depend on the number of processes (each rank trains on its share of
every global batch and DDP averages the gradients), so a 2-process run and a 1-process run differ
only by the order of float32 sums: about 3e-7 here, held to ``TOLERANCE``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.network.pixelcnn import PixelCNNConfig
from model.training import Trainer, TrainSettings, open_run
from model.training.distributed import World, check_global_batch, epoch_batches

ROOT = Path(__file__).resolve().parents[1]
TINY = PixelCNNConfig(arch="gated", channels=8, layers=2, num_classes=10, head_channels=16)
# Float32 sums in another order give ~3e-7 after these steps; a wrong batch or a missing
# gradient average gives differences of 1e-2 and more (3e-2 without DDP).
TOLERANCE = 1e-5


def settings(run_dir: Path, **overrides: object) -> TrainSettings:
    """The run that ``torchrun_args`` describe (10 steps an epoch, float32 for tight agreement)."""
    base = {
        "model": TINY,
        "run_dir": str(run_dir),
        "epochs": 2,
        "batch_size": 16,
        "lr": 3e-3,
        "warmup_steps": 5,
        "bf16": False,
        "train_limit": 160,
        "val_limit": 32,
        "samples_per_epoch": False,
        "checkpoint_minutes": 100.0,
    }
    base.update(overrides)
    return TrainSettings(**base)  # type: ignore[arg-type]


def torchrun_args(run_dir: Path, max_steps: int) -> list[str]:
    return [
        *("--run-dir", str(run_dir), "--channels", "8", "--layers", "2", "--head-channels", "16"),
        *("--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "5"),
        *("--train-limit", "160", "--val-limit", "32", "--max-steps", str(max_steps)),
        *("--no-bf16", "--no-samples", "--quiet", "--checkpoint-minutes", "100", "--threads", "1"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as each torchrun process has: a second one only fights the others."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.usefixtures("one_thread")
def test_two_processes_train_the_weights_of_one_and_resume_in_one(tmp_path: Path) -> None:
    # 14 steps on 2 processes: past the end of epoch 1 (validation on rank 0), into epoch 2.
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    done = subprocess.run(
        [*cmd, "-m", "model.train", *torchrun_args(two, max_steps=14)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "global batch 16 = 2 processes x 8" in done.stdout
    state = torch.load(two / "state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (14, 1, 4)

    one = Trainer(settings(tmp_path / "one", max_steps=14))
    one.run(progress=False)
    assert largest_difference(state["model"], one.model.state_dict()) < TOLERANCE
    assert largest_difference(state["ema"], one.ema.state_dict()) < TOLERANCE
    assert state["best_val"] == pytest.approx(one.best_val, abs=TOLERANCE)

    # The 2-process checkpoint continues in one process at the same global batch.
    resumed = open_run(settings(two), resume=True)
    assert (resumed.step, resumed.batch_in_epoch) == (14, 4)
    resumed.run(progress=False)
    one_more = open_run(settings(tmp_path / "one"), resume=True)
    one_more.run(progress=False)
    assert resumed.step == one_more.step == 20
    assert largest_difference(resumed.model.state_dict(), one_more.model.state_dict()) < TOLERANCE
    assert largest_difference(resumed.ema.state_dict(), one_more.ema.state_dict()) < TOLERANCE


def test_rank_batches_make_up_the_single_process_batches() -> None:
    single = epoch_batches(seed=3, epoch=2, size=103, global_batch=12, world=World())
    # One process keeps the order that runs had before training was distributed.
    order = torch.randperm(103, generator=torch.Generator().manual_seed(3 * 100_003 + 2))
    assert [b.tolist() for b in single] == [b.tolist() for b in order[:96].split(12)]
    for world_size in (2, 3, 4):
        ranks = [epoch_batches(3, 2, 103, 12, World(r, world_size)) for r in range(world_size)]
        for k, batch in enumerate(single):
            shares = [rank[k] for rank in ranks]
            assert all(len(share) == 12 // world_size for share in shares)
            assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
        assert all(len(rank) == len(single) for rank in ranks)


def test_the_global_batch_must_split_evenly() -> None:
    assert check_global_batch(64, 4) == 16
    with pytest.raises(ValueError, match=r"global batch size \(63\) must be divisible .* \(2\)"):
        check_global_batch(63, 2)
