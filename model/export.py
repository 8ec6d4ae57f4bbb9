"""``python -m model.export``: turn a training run into a weights file and its pictures.

Takes the EMA weights of a run (``best.safetensors``, the best validation epoch; the latest
``state.pt`` with ``--from-state``, or when no epoch has ended yet), scores them on the run's
own validation and test splits (``--limit N`` scores the first N of each, ``--limit 0`` none),
and writes one safetensors file whose metadata holds the training facts (no paths, no command
lines), plus a per-class sample grid, completions of half-masked images and the training
curves beside it. The work is ``model.training.export.export``.

    python -m model.export --run-dir runs/mine                    # writes runs/mine/model.safetensors
    python -m model.export --run-dir runs/mine --out mine.safetensors --limit 500

A file in a ``weights/`` folder (where the shipped weights live) is only replaced with
``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.training.export import ExportError, export

DEFAULT_OUT = "model.safetensors"  # in the run directory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", default=None, help=f"the weights file to write (default: RUN_DIR/{DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="replace an existing file in a weights/ folder")
    p.add_argument("--from-state", action="store_true", help="latest EMA weights instead of the best epoch")
    p.add_argument(
        "--limit", type=int, default=None, help="score only the first N images of each split (0: none)"
    )
    p.add_argument("--wall-hours", type=float, default=None, help="training wall time, recorded")
    p.add_argument("--no-pictures", action="store_true")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        p.error("--limit must be 0 or more")
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / DEFAULT_OUT
    if out.exists() and out.resolve().parent.name == "weights" and not args.force:
        print(
            f"error: {out} exists in a weights/ folder (shipped weights?): pass --force to replace it",
            file=sys.stderr,
        )
        return 2
    if out.is_dir():
        print(f"error: --out {out} is a directory: name a .safetensors file", file=sys.stderr)
        return 2
    try:
        summary = export(
            run_dir,
            out,
            from_state=args.from_state,
            wall_hours=args.wall_hours,
            with_pictures=not args.no_pictures,
            limit=args.limit,
        )
    except (ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
