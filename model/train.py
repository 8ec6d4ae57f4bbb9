"""``python -m model.train``: train a PixelCNN on Fashion-MNIST or your own images (the command
line of model.training).

Data (--data): a folder of images (one subfolder per class, named by it; or no subfolders for
no classes; or train/ and test/ folders laid out that way), an .npz file (images (N, H, W)
uint8, optional labels, class_names, test_images, test_labels) or a folder of MNIST-format IDX
files. Without --data: Fashion-MNIST from Debian's package.

Examples:
    python -m model.train --data my-pictures/ --image-size 32 --run-dir runs/mine --epochs 20
    python -m model.train --run-dir runs/gated --epochs 10
    python -m model.train --run-dir runs/gated --resume          # continue after a stop
    python -m model.train --run-dir runs/tuned --init-from weights/pixelcnn-gated-fmnist.safetensors \
        --epochs 3 --lr 5e-4 --warmup-steps 100                  # fine-tune shipped weights
    python -m model.train --arch pixelcnn --channels 32 --layers 5 --epochs 1 --no-cond
    torchrun --nproc_per_node=2 -m model.train --run-dir runs/gated --threads 1   # 2 processes

Under torchrun, --batch-size is the global batch (split evenly over the processes) and only
rank 0 prints, writes the run directory and shows a progress bar.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, read_metadata
from model.data import DatasetError
from model.data.arrays import DEFAULT_VALIDATION_FRACTION
from model.data.sources import open_source
from model.network.pixelcnn import ARCHITECTURES, PixelCNNConfig
from model.training import distributed
from model.training.runs import open_run
from model.training.settings import TrainSettings
from model.training.trainer import SKIPPED_FILE, Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    m = p.add_argument_group("model (ignored with --resume: the run's own settings are used)")
    m.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=None,
        help="default gated; with --init-from, gated-attention grows a gated file (see below)",
    )
    m.add_argument("--channels", type=int, default=64)
    m.add_argument("--layers", type=int, default=12)
    m.add_argument("--levels", type=int, default=256)
    m.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="8..64: centre-crop and resize every image to N x N (default: the data's own square size)",
    )
    m.add_argument(
        "--no-cond",
        action="store_true",
        help="unconditional model (the default when the data has no classes)",
    )
    m.add_argument("--kernel-size", type=int, default=7)
    m.add_argument("--hidden-kernel-size", type=int, default=3)
    m.add_argument("--head-channels", type=int, default=128)
    m.add_argument("--attention-every", type=int, default=4, help="gated-attention: a block every N layers")
    m.add_argument(
        "--image-channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="1: grayscale; 3: RGB, each pixel's red, green and blue predicted in turn "
        "(default: the --init-from file's, else 1)",
    )
    m.add_argument("--attention-heads", type=int, default=2, help="gated-attention: heads per block")
    t = p.add_argument_group("training")
    t.add_argument("--run-dir", default="runs/default")
    t.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="a folder of images, an .npz file or a folder of IDX files",
    )
    t.add_argument(
        "--data-dir", default=None, help="without --data: directory of the four Fashion-MNIST IDX .gz files"
    )
    t.add_argument(
        "--validation-fraction",
        type=float,
        default=DEFAULT_VALIDATION_FRACTION,
        help="share of the training images held out for validation (fixed seed; default 1/12)",
    )
    t.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave unreadable image files out (listed in the run) instead of stopping",
    )
    t.add_argument(
        "--epochs", type=int, default=None, help="total epochs (default 10; with --resume: the run's own)"
    )
    t.add_argument("--batch-size", type=int, default=64, help="global batch, over all processes")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup-steps", type=int, default=500)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast is the default)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-limit", type=int, default=None)
    t.add_argument("--val-limit", type=int, default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--checkpoint-minutes", type=float, default=3.0)
    t.add_argument("--no-samples", action="store_true", help="skip the per-epoch sample grid")
    t.add_argument("--resume", action="store_true")
    t.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="start a new run from these weights (model and EMA) instead of a random init; "
        "the model flags are then taken from the file, except --arch gated-attention with a gated "
        "file, or with a smaller --attention-every than a gated-attention file's: its layers and "
        "blocks are kept and new attention blocks (which start as the identity) are added",
    )
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (per process)")
    t.add_argument("--export", default=None, help="copy the best EMA weights here at the end")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.validation_fraction <= 0.5:
        print(
            f"error: --validation-fraction must be in (0, 0.5], got {args.validation_fraction}",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = distributed.start(args.device)  # joins torchrun's process group, if launched by it
    try:
        return train(args, device)
    finally:
        distributed.stop()


def image_channels(args: argparse.Namespace) -> int:
    """The colours to read the data in: those of the ``--init-from`` file (which fixes the
    model), else ``--image-channels``, else 1; a flag that contradicts the file is an error."""
    if not args.init_from or args.resume:
        return int(args.image_channels or 1)
    try:
        start = PixelCNNConfig.from_json(read_metadata(args.init_from)["config"]).image_channels
    except (CheckpointError, KeyError, ValueError):
        return int(args.image_channels or 1)  # the run says what is wrong with the file
    if args.image_channels is not None and args.image_channels != start:
        raise DatasetError(
            f"--image-channels {args.image_channels}, but {Path(args.init_from).name} draws "
            f"{'RGB' if start == 3 else 'grayscale'} images ({start} channel{'s' if start > 1 else ''}): "
            "leave the flag out to follow the file"
        )
    return start


def train(args: argparse.Namespace, device: str) -> int:
    """Open (or resume) the run that ``args`` describe and train it on ``device``."""
    main_rank = distributed.World.current().is_main
    dataset = None
    try:
        colours = image_channels(args)
        if not args.resume:  # read and check the data before anything is written
            dataset = open_source(
                args.data,
                args.image_size,
                data_dir=args.data_dir,
                skip_bad_files=args.skip_bad_files,
                progress=main_rank and not args.quiet,
                colours=colours,
            )
    except DatasetError as exc:
        if main_rank:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = None if dataset is None else dataset.class_names
    config = PixelCNNConfig(
        arch=args.arch or "gated",
        channels=args.channels,
        layers=args.layers,
        levels=args.levels,
        image_size=dataset.image_size if dataset is not None else 28,  # a resumed run keeps its own
        num_classes=None if args.no_cond or not classes else len(classes),
        class_names=None if args.no_cond or not classes else classes,
        kernel_size=args.kernel_size,
        hidden_kernel_size=args.hidden_kernel_size,
        head_channels=args.head_channels,
        attention_every=args.attention_every,
        attention_heads=args.attention_heads,
        image_channels=colours,
    )
    settings = TrainSettings(
        model=config,
        run_dir=args.run_dir,
        data=args.data,
        data_dir=args.data_dir,
        validation_fraction=args.validation_fraction,
        skip_bad_files=args.skip_bad_files,
        epochs=args.epochs if args.epochs is not None else 10,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip,
        ema_decay=args.ema_decay,
        bf16=not args.no_bf16,
        seed=args.seed,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        max_steps=args.max_steps,
        checkpoint_minutes=args.checkpoint_minutes,
        samples_per_epoch=not args.no_samples,
        init_from=args.init_from,
        grow_to=args.arch if args.init_from and args.arch else None,
    )
    try:
        trainer = open_run(settings, args.resume, device, epochs=args.epochs, dataset=dataset)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError, DatasetError) as exc:
        if main_rank:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if main_rank:
        describe(trainer, device, args.resume)
    best = trainer.run(progress=not args.quiet)
    if not main_rank:
        return 0
    best_file = Path(trainer.settings.run_dir) / "best.safetensors"
    if args.export and best_file.exists():
        shutil.copyfile(best_file, args.export)
    print(
        json.dumps(
            {
                "step": trainer.step,
                "epoch": trainer.epoch,
                "best_validation_bits_per_dim": best if best < float("inf") else None,
            }
        )
    )
    return 0


def describe(trainer: Trainer, device: str, resume: bool) -> None:
    """Print the model, the data and the batch and learning rate as the whole run sees them."""
    s, world = trainer.settings, trainer.world
    print(f"model: {s.model.to_json()} ({trainer.model.parameter_count():,} parameters)")
    split = f" = {world.size} processes x {s.batch_size // world.size}" if world.size > 1 else ""
    data = trainer.dataset
    classes = ", ".join(data.class_names) if data.class_names else "none"
    print(f"data: {data.name}, {data.image_size}x{data.image_size}, classes: {classes}")
    if data.skipped:
        print(
            f"skipped {len(data.skipped)} unreadable files (listed in {SKIPPED_FILE}): "
            + "; ".join(data.skipped[:5])
        )
    print(
        f"data: {len(trainer.train)} train / {len(trainer.val)} validation images; "
        f"global batch {s.batch_size}{split}, peak lr {s.lr}, {trainer.steps_per_epoch} steps/epoch, "
        f"bf16 {'on' if s.bf16 else 'off'}, device {device}, threads {torch.get_num_threads()}"
        + (" per process" if world.size > 1 else "")
    )
    if resume:
        print(f"resuming at epoch {trainer.epoch}, step {trainer.step}")
    elif s.init_from:
        print(f"starting from the weights in {s.init_from} (sha256 {s.init_sha256})")


if __name__ == "__main__":
    raise SystemExit(main())
