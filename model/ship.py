"""``python -m model.ship CANDIDATE [--dry-run]``: replace the shipped Fashion-MNIST weights with a
better file, and remake everything made from them.

The candidate and the shipped file are measured the same way (``model.shipping.figures``: test
and validation bits/dim on every image, overall and per class; class fidelity and FID of 100
samples a class at temperature 1.0; container size on the first 1,000 test images). Only a
candidate with fewer test bits/dim, a higher class fidelity and an FID no higher replaces the
shipped file; then the command remakes, from the new file: the model card's pictures, the
README's pictures (fetched from the service itself), the shipped codec fixtures (with the
reference encoder), the figures pinned by the tests, ``weights/<stem>.figures.json`` and the
README's and model card's figures (the file before stays in the card's lineage table).

A candidate that is not better is reported with its figures and nothing changes (exit 1).
``--dry-run`` measures and compares only. ``--remake`` remakes everything from the shipped
file as it is (after a change of the code that makes them). Figures are cached under
``runs/ship/`` per file and measurement, so a second run costs little.

    python -m model.ship checkpoints/pixelcnn-gated-attention-latest.safetensors --dry-run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import CheckpointError, atomic_write, file_sha256, load
from model.data import DatasetError
from model.inference.generation import generate
from model.shipping.documents import rewrite_documents
from model.shipping.figures import Measurement, ShipError, measure, read_figures, refusals, write_figures
from model.shipping.pictures import CODE_ROOT, remake_pictures
from model.shipping.quality import DEFAULT_PATH as JUDGE_PATH
from model.shipping.quality import Judge

STEM = "pixelcnn-gated-fmnist"
# Pinned by tests/test_shipped_weights.py: the images these seeds give with the shipped file.
PINNED_GENERATE: dict[str, Any] = {"n": 4, "labels": [0, 3, 7, 9], "seeds": [0, 1, 2, 3]}
PINS_FILE = "tests/fixtures/shipped-weights.json"


def figures_of(
    path: Path, how: Measurement, key: dict[str, Any], judge: Judge, root: Path, cache_dir: Path
) -> dict[str, Any]:
    """The figures of ``path``, from ``cache_dir`` when measured the same way before."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    cache = cache_dir / f"{file_sha256(path)[:16]}-{digest}.json"
    if cache.is_file():
        print(f"{path}: figures measured before ({cache.name})")
        return dict(json.loads(cache.read_text()))
    print(f"{path}: measuring (test and validation bits/dim, samples, containers)", flush=True)
    record = measure(path, how, judge, root / "weights" / "fmnist-classifier.safetensors")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(record, indent=1))
    return record


def comparison(candidate: dict[str, Any], shipped: dict[str, Any]) -> str:
    """Old and new side by side."""

    def row(name: str, old: object, new: object) -> str:
        return f"{name:28} {old!s:>12} {new!s:>12}"

    lines = [row("", "shipped", "candidate")]
    for name, key in (
        ("test bits/dim", "test_bits_per_dim"),
        ("validation bits/dim", "validation_bits_per_dim"),
        ("class fidelity (T=1.0)", "fidelity"),
        ("FID (T=1.0)", "fid"),
        ("samples' bits/dim", "sample_bits_per_dim"),
    ):
        lines.append(row(name, shipped[key], candidate[key]))
    lines.append(
        row(
            "containers, bits/dim",
            shipped["compression"]["container_bits_per_dim"],
            candidate["compression"]["container_bits_per_dim"],
        )
    )
    for name, value in candidate["test_per_class"].items():
        lines.append(row(f"  test, {name}", shipped["test_per_class"][name], value))
    for name, value in candidate["fidelity_per_class"].items():
        lines.append(row(f"  fidelity, {name}", shipped["fidelity_per_class"][name], value))
    return "\n".join(lines)


def remake(root: Path, current: dict[str, Any], history: list[dict[str, Any]], key: dict[str, Any]) -> None:
    """Everything made from the shipped file under ``root``: pictures, fixtures, pins, documents."""
    shipped = root / "weights" / f"{STEM}.safetensors"
    for name in remake_pictures(shipped, root):
        print(f"remade {name}")
    fixtures = subprocess.run(
        [sys.executable, "-m", "tests.codec_fixtures", "--weights", str(shipped.resolve()),
         "--model", "shipped", "--out", str((root / "tests" / "fixtures" / "codec").resolve())],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if fixtures.returncode != 0:
        raise ShipError(f"the codec fixtures could not be made: {fixtures.stderr.strip()[-300:]}")
    print(f"remade the shipped codec fixtures with the reference encoder:\n{fixtures.stdout.strip()}")
    images = generate(load(shipped), **PINNED_GENERATE)
    pins = {
        "sha256": file_sha256(shipped),
        "generate": PINNED_GENERATE,
        "images_sha256": hashlib.sha256(images.numpy().tobytes()).hexdigest(),
    }
    (root / PINS_FILE).write_text(json.dumps(pins, indent=1) + "\n")
    write_figures(
        root / "weights" / f"{STEM}.figures.json",
        {"measurement": key, "current": current, "history": history},
    )
    curves = (root / "weights" / f"{STEM}-curves.png").is_file()
    rewrite_documents(root, current, history, curves)
    print(f"remade {PINS_FILE}, weights/{STEM}.figures.json, README.md and weights/README.md")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.ship",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("candidate", nargs="?", type=Path, help="the weights file to ship")
    p.add_argument("--dry-run", action="store_true", help="measure and compare; change nothing")
    p.add_argument("--remake", action="store_true", help="remake everything from the shipped file as it is")
    p.add_argument(
        "--curves", type=Path, default=None, help="the candidate's training curves (PNG) for the card"
    )
    p.add_argument(
        "--root", type=Path, default=CODE_ROOT, help="the tree to change (default: this repository)"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="score only the first N test and validation images"
    )
    p.add_argument("--per-class", type=int, default=Measurement.per_class, help="samples per class judged")
    p.add_argument("--compression-images", type=int, default=Measurement.compression_images)
    p.add_argument("--judge", type=Path, default=None, help="another model.classifier file as the judge")
    p.add_argument("--cache", type=Path, default=CODE_ROOT / "runs" / "ship", help="where figures are cached")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if (args.candidate is None) == (not args.remake) or (args.remake and args.dry_run):
        p.error("give a CANDIDATE weights file (optionally with --dry-run), or --remake alone")
    if args.per_class < 2 or (args.limit is not None and args.limit < 2) or args.compression_images < 1:
        p.error("--per-class and --limit must be at least 2, --compression-images at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    root: Path = args.root.resolve()
    shipped = root / "weights" / f"{STEM}.safetensors"
    how = Measurement(limit=args.limit, per_class=args.per_class, compression_images=args.compression_images)
    try:
        judge = Judge.ready(args.judge, train=False) if args.judge else Judge.ready(CODE_ROOT / JUDGE_PATH)
        key = how.key(judge)
        record = read_figures(root / "weights" / f"{STEM}.figures.json") or {}
        history = list(record.get("history", []))
        current = figures_of(shipped, how, key, judge, root, args.cache)
        if args.remake:
            remake(root, current, history, key)
            return 0
        if file_sha256(args.candidate) == current["sha256"]:
            raise ShipError(f"{args.candidate} is the shipped file already")
        candidate = figures_of(args.candidate, how, key, judge, root, args.cache)
        print(comparison(candidate, current))
        reasons = refusals(candidate, current)
        if reasons:
            print("not shipped: " + "; ".join(reasons))
            return 1
        if args.dry_run:
            print("better on every count: it would be shipped (dry run: nothing changed)")
            return 0
        atomic_write(shipped, lambda tmp: shutil.copyfile(args.candidate, tmp))
        curves_file = root / "weights" / f"{STEM}-curves.png"
        if args.curves is not None:
            shutil.copyfile(args.curves, curves_file)
        else:
            curves_file.unlink(missing_ok=True)  # the old file's training curves describe another file
        remake(root, candidate, [current, *history], key)
    except (ShipError, CheckpointError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"shipped {args.candidate} as {shipped.relative_to(root)} (sha256 {candidate['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
