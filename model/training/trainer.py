"""The training loop: Adam, warmup + cosine schedule, clipping, EMA, bf16 autocast, resume.

A run directory holds everything a run needs to continue exactly where it stopped:
``settings.json`` (the run's settings), ``state.pt`` (model, EMA, optimizer, schedule, step
and RNG; written atomically every few minutes and on SIGINT/SIGTERM), ``metrics.jsonl``,
``curves.png``, ``samples/epoch-NNN.png`` and ``best.safetensors`` (the EMA weights with the
lowest validation bits/dim so far). Batches are a pure function of (seed, epoch, index), so
resuming replays the same data order.

Under ``torchrun`` the same loop runs in every process with DistributedDataParallel (see
``model.training.distributed``): each rank trains on its share of every global batch, only rank 0 touches
the run directory, and every rank stops at the same step. ``model.training.runs`` opens a run
(new, resumed, or started from a weights file) and hands back its ``Trainer``.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.checkpoint import atomic_write, save
from model.data import dequantize, quantize
from model.data.sources import Dataset, load_cache, with_size
from model.inference.generation import generate
from model.inference.likelihood import bits_per_dim_loss, score_split
from model.network.pixelcnn import PixelCNN
from model.pictures import image_grid
from model.training.curves import plot_curves
from model.training.distributed import World, all_reduce_sum, check_global_batch, epoch_batches, from_main
from model.training.run_data import run_dataset, with_class_names
from model.training.settings import TrainSettings, lr_factor

STATE_FILE = "state.pt"
SETTINGS_FILE = "settings.json"
SKIPPED_FILE = "skipped-files.txt"


class Trainer:
    """Owns one run: builds or restores its state, trains, checkpoints, evaluates.

    In a process group (torchrun) it is one rank of a data-parallel run; ``model`` stays the
    bare network (a checkpoint's names carry no ``module.`` prefix), ``net`` is what trains.
    """

    def __init__(self, settings: TrainSettings, device: str = "cpu", dataset: Dataset | None = None):
        self.settings = settings
        self.device = torch.device(device)
        self.run_dir = Path(settings.run_dir)
        self.world = World.current()
        check_global_batch(settings.batch_size, self.world.size)
        self.dataset = with_size(dataset, settings.model.image_size) if dataset else run_dataset(settings)
        settings.model = with_class_names(settings.model, self.dataset)
        torch.manual_seed(settings.seed)  # the same start on every rank (DDP broadcasts it anyway)
        self.model = PixelCNN(settings.model).to(self.device)
        self.ema = copy.deepcopy(self.model).eval()
        self.net: torch.nn.Module = self.model
        if self.world.size > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val = float("inf")
        self.validated_epochs = 0  # epochs whose end-of-epoch work (validation, samples) is done
        self.stop_requested = False
        fraction = settings.validation_fraction
        self.train = self.dataset.part("train", fraction).first(settings.train_limit or None)
        self.val = self.dataset.part("validation", fraction).first(settings.val_limit or None)
        self.steps_per_epoch = len(self.train) // settings.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the batch ({settings.batch_size}) is larger than the {len(self.train)} training images: "
                f"pass --batch-size {len(self.train)} or less"
            )
        self.total_steps = self.steps_per_epoch * settings.epochs

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val": self.best_val,
            "validated_epochs": self.validated_epochs,
            "torch_rng": torch.get_rng_state(),
        }

    def save_state(self) -> None:
        if self.world.is_main:  # every rank holds the same state; one writes it
            atomic_write(self.run_dir / STATE_FILE, lambda tmp: torch.save(self.state_dict(), tmp))

    def restore(self) -> None:
        # Rank 0 reads and sends, so that only its machine needs the run directory. On the CPU
        # it can travel pickled; load_state_dict copies it to the device.
        state: dict[str, Any] | None = None
        if self.world.is_main:
            state = torch.load(self.run_dir / STATE_FILE, map_location="cpu", weights_only=True)
        state = from_main(state)
        assert state is not None
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch, self.best_val = int(state["batch_in_epoch"]), float(state["best_val"])
        # Older states lack the field: treat their finished epochs as validated.
        self.validated_epochs = int(state.get("validated_epochs", self.epoch))
        torch.set_rng_state(state["torch_rng"])

    # --- the loop --------------------------------------------------------------------------
    def log(self, row: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> float:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr * lr_factor(self.step, self.settings, self.total_steps)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.bf16):
            logits = self.net(x, y)
        loss = bits_per_dim_loss(logits, x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP this returns once the gradients are averaged over all ranks
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            decay = min(self.settings.ema_decay, (1 + self.step) / (10 + self.step))
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p.detach(), 1 - decay)
        self.step += 1
        return float(loss.detach())

    def end_of_epoch(self) -> float:
        """Validate, keep the best weights, draw samples, plot: rank 0 works, the others wait."""
        val = self._validate_and_report() if self.world.is_main else 0.0
        # Every rank holds the same EMA, so rank 0's figure is everyone's; waiting for it is
        # the barrier (validation is short next to PROCESS_GROUP_TIMEOUT).
        val = from_main(val)
        self.best_val = min(self.best_val, val)
        self.validated_epochs = self.epoch
        return val

    def _validate_and_report(self) -> float:
        val = float(score_split(self.ema, self.val).mean())
        self.log(
            {
                "kind": "validation",
                "epoch": self.epoch,
                "step": self.step,
                "epoch_progress": float(self.epoch),
                "bits_per_dim": val,
            }
        )
        if val < self.best_val:
            self.best_val = val
            save(
                self.ema,
                self.run_dir / "best.safetensors",
                epochs=self.epoch,
                steps=self.step,
                validation_bits_per_dim=val,
                data=self.dataset.describe(self.settings.validation_fraction),
                data_sha256=self.dataset.fingerprint,
                train_images=len(self.train),
            )
        if self.settings.samples_per_epoch:
            self.write_samples()
        plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
        return val

    def write_samples(self) -> None:
        k = self.settings.model.num_classes
        labels = list(range(k)) if k else None
        # The cached sampler (tested equal to the naive one): seconds instead of minutes.
        images = generate(self.ema, k or 8, labels=labels, seeds=list(range(k or 8)))
        out = self.run_dir / "samples" / f"epoch-{self.epoch:03d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        image_grid(dequantize(images, self.settings.model.levels), columns=k or 8, scale=2).save(out)

    def run(self, progress: bool = True) -> float:
        """Train until ``epochs`` (or ``max_steps``) are done; returns the best validation bits/dim."""
        s, world = self.settings, self.world
        if world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / SETTINGS_FILE).write_text(s.to_json())
            self._keep_data()
        handlers = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        last_save = time.monotonic()
        try:
            if self.validated_epochs < self.epoch:  # stopped during the last end-of-epoch work
                try:
                    self.end_of_epoch()
                except Exception as exc:  # e.g. a full disk: never let it block the training itself
                    print(f"warning: end-of-epoch work for epoch {self.epoch} failed again ({exc}); skipped")
                    self.validated_epochs = self.epoch
                self.save_state()
            while self.epoch < s.epochs and not self._step_limit_reached():
                # This rank's share of each global batch; batch_in_epoch counts global batches.
                batches = epoch_batches(s.seed, self.epoch, len(self.train), s.batch_size, world)
                bar = tqdm(
                    total=len(batches),
                    initial=self.batch_in_epoch,
                    disable=not (progress and world.is_main),
                    desc=f"epoch {self.epoch + 1}/{s.epochs}",
                    dynamic_ncols=True,
                )
                running: list[float] = []
                started, seen = time.monotonic(), 0
                while self.batch_in_epoch < len(batches):
                    idx = batches[self.batch_in_epoch]
                    x = quantize(self.train.images[idx], s.model.levels).to(self.device)
                    y = self.train.labels[idx].to(self.device) if s.model.num_classes else None
                    loss = self.train_step(x, y)
                    # One small all-reduce a step: the global batch's loss, and whether any rank
                    # got SIGINT/SIGTERM, so that all stop after this same step.
                    loss_sum, stops = all_reduce_sum([loss, float(self.stop_requested)], self.device)
                    running.append(loss_sum / world.size)
                    self.batch_in_epoch += 1
                    seen += x.shape[0] * world.size
                    mean = sum(running[-100:]) / len(running[-100:])
                    bar.update(1)
                    bar.set_postfix(bpd=f"{mean:.4f}", img_s=f"{seen / (time.monotonic() - started):.0f}")
                    if self.step % s.log_every == 0:
                        self.log(
                            {
                                "kind": "train",
                                "epoch": self.epoch,
                                "step": self.step,
                                "epoch_progress": self.epoch + self.batch_in_epoch / len(batches),
                                "bits_per_dim": mean,
                                "images_per_second": seen / (time.monotonic() - started),
                                "processes": world.size,
                            }
                        )
                    if stops > 0 or self._step_limit_reached():
                        break
                    if time.monotonic() - last_save > 60 * s.checkpoint_minutes:
                        self.save_state()
                        last_save = time.monotonic()
                bar.close()
                if self.batch_in_epoch < len(batches):
                    break  # stopped mid-epoch: save below, resume later
                self.epoch += 1
                self.batch_in_epoch = 0
                # Save before validating, so that a kill during the end-of-epoch work costs
                # that work only, never the epoch's training.
                self.save_state()
                self.end_of_epoch()
                self.save_state()
                last_save = time.monotonic()
        finally:
            self.save_state()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return self.best_val

    def _keep_data(self) -> None:
        """Cache a data set other than Fashion-MNIST in the run directory (decoded once, and
        still there if the source moves) and list the files --skip-bad-files left out."""
        if self.settings.data is not None and load_cache(self.run_dir) is None:
            self.dataset.save(self.run_dir)
        if self.dataset.skipped:
            lines = "\n".join(self.dataset.skipped)
            (self.run_dir / SKIPPED_FILE).write_text(f"{len(self.dataset.skipped)} files skipped\n{lines}\n")

    def _step_limit_reached(self) -> bool:
        return self.settings.max_steps is not None and self.step >= self.settings.max_steps

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True
