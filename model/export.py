"""``python -m model.export``: turn a training run into a weights file and its pictures.

Takes the EMA weights of a run (``best.safetensors``, the best validation epoch, or the
latest ``state.pt`` with ``--from-state``), scores them on the validation and test sets, and
writes one safetensors file whose metadata holds the training facts (no paths, no command
lines), plus a per-class sample grid, completions of half-masked test images and the
training curves beside it. The work is ``model.training.export.export``.

    python -m model.export --run-dir runs/gated --out weights/pixelcnn-gated-fmnist.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.training.export import export


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", default="weights/pixelcnn-gated-fmnist.safetensors")
    p.add_argument("--from-state", action="store_true", help="latest EMA weights instead of the best epoch")
    p.add_argument("--wall-hours", type=float, default=None, help="training wall time, recorded")
    p.add_argument("--no-pictures", action="store_true")
    args = p.parse_args(argv)
    summary = export(
        Path(args.run_dir),
        Path(args.out),
        from_state=args.from_state,
        wall_hours=args.wall_hours,
        with_pictures=not args.no_pictures,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
