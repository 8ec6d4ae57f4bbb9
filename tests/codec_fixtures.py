"""Reference containers: what the codec wrote for fixed inputs, kept to pin its bytes down.

``python -m tests.codec_fixtures [--weights FILE] [--out DIR] [CASE ...]`` writes
``<out>/<case>.bin`` (default ``tests/fixtures/codec/``, the shipped weights, every case). They
are made by the encoder as it was before it was rewritten for speed (issue 18), at commit
``REFERENCE_COMMIT``: this command takes that commit's ``model/`` package from the repository's
git history and runs it in a child process on the same weights and inputs. So
``tests/test_codec_fixtures.py`` checks that today's encoder writes exactly these bytes and
that they still decode. Rewrite them only when the weights of a case change (``model.ship``
does so for the shipped weights; or how a small seeded model is built), never to make an
encoder change pass.

Inputs are fixed: Fashion-MNIST test images by index for the shipped weights, seeded noise for
small seeded models (``tests.conftest.random_model``).

Coded bytes follow the floating point results of the machine that codes them, and CPUs of
other kinds (AVX-512 or not, say) round some sums differently. So ``platform.json`` beside the
fixtures records, per model, a digest of the cached network's logits on a fixed input
(``platform_probe``) on the machine that made them. Where a machine computes another digest,
the test compares today's encoder with the reference encoder run live on that machine instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load, save
from model.data import load_fashion_mnist
from model.inference.cached import cached_logits
from model.network.pixelcnn import PixelCNN
from tests.conftest import SHIPPED_WEIGHTS, random_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "codec"
PLATFORM_FILE = "platform.json"
REFERENCE_COMMIT = "518d4b6"  # the last encoder before the fast one
# Run inside the reference tree: load each model from its safetensors file (fields the reference
# config lacks, such as class names, change no tensor and no probability) and code each case.
REFERENCE_RUNNER = """
import dataclasses, json, sys
import numpy as np, torch
from safetensors import safe_open
from safetensors.torch import load_file
from model.codec import compress
from model.network.pixelcnn import PixelCNN, PixelCNNConfig
job = json.load(open(sys.argv[1]))
inputs = np.load(job["inputs"])
known = {f.name for f in dataclasses.fields(PixelCNNConfig)}
models = {}
for name, path in job["weights"].items():
    with safe_open(path, framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    unknown = set(config) - known - {"class_names"}
    if unknown:
        sys.exit(f"the reference encoder cannot build a model with {sorted(unknown)}")
    net = PixelCNN(PixelCNNConfig(**{k: v for k, v in config.items() if k in known}))
    net.load_state_dict(load_file(path))
    models[name] = net.eval()
for case in job["cases"]:
    images = torch.from_numpy(inputs[case["name"]])
    data = compress(models[case["model"]], images, case["labels"])
    with open(case["out"], "wb") as out:
        out.write(data)
    print(case["name"] + ": " + str(len(data)) + " bytes", flush=True)
"""


@dataclass(frozen=True)
class Case:
    model: str  # "shipped", or "<arch>-<conditional|unconditional>" for a small seeded model
    first: int  # test images first .. first + count - 1, or the seed of the noise
    count: int
    labels: int | tuple[int, ...] | None = None  # None: the codec picks each image's label


CASES = {
    "shipped-image-0": Case("shipped", 0, 1),
    "shipped-image-1": Case("shipped", 1, 1),
    "shipped-image-2": Case("shipped", 2, 1),
    "shipped-images-0-63": Case("shipped", 0, 64),
    "shipped-images-100-139": Case("shipped", 100, 40),  # a full coder batch and 8 more
    "shipped-given-labels": Case("shipped", 64, 4, (0, 3, 9, 3)),
    "shipped-one-given-label": Case("shipped", 68, 1, 7),
    "gated-conditional-noise-1": Case("gated-conditional", 1, 1),
    "gated-conditional-noise-40": Case("gated-conditional", 40, 40),
    "gated-unconditional-noise-5": Case("gated-unconditional", 5, 5),
    "pixelcnn-conditional-noise-3": Case("pixelcnn-conditional", 3, 3),
    "gated-attention-conditional-noise-3": Case("gated-attention-conditional", 3, 3),
}


def case_model(name: str) -> PixelCNN:
    if name == "shipped":
        return load(SHIPPED_WEIGHTS)
    arch, kind = name.rsplit("-", 1)
    classes = 10 if kind == "conditional" else None
    return random_model(arch, classes, size=8, channels=8, layers=2, seed=4)


def case_images(case: Case, model: PixelCNN) -> torch.Tensor:
    """The case's input, model values ``(count, 1, H, W)`` uint8."""
    if case.model == "shipped":
        return load_fashion_mnist("test").images[case.first : case.first + case.count]
    cfg = model.config
    shape = (case.count, 1, cfg.image_size, cfg.image_size)
    generator = torch.Generator().manual_seed(case.first)
    return torch.randint(0, cfg.levels, shape, generator=generator).to(torch.uint8)


@torch.no_grad()
def platform_probe(model: PixelCNN) -> str:
    """sha256 of the cached logits (float32) of one seeded noise image: equal on two machines
    only if they compute what the codec codes with the same rounding."""
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, cfg.levels, (1, 1, cfg.image_size, cfg.image_size), generator=generator)
    labels = torch.tensor([1]) if cfg.num_classes else None
    logits = cached_logits(model, image, labels).contiguous()
    return hashlib.sha256(logits.numpy().tobytes()).hexdigest()


def write_with_reference_encoder(
    names: list[str], shipped: Path, out: Path, commit: str = REFERENCE_COMMIT, git_dir: Path = ROOT
) -> None:
    """Write the fixtures of ``names`` into ``out``, made by the encoder of ``commit``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(git_dir), "archive", "--format=tar", commit, "model"], capture_output=True
        )
        if archive.returncode != 0:
            message = archive.stderr.decode(errors="replace").strip()
            raise RuntimeError(
                f"the reference encoder (commit {commit}) is not in {git_dir}'s history: {message}"
            )
        (work / "reference").mkdir()
        subprocess.run(["tar", "-x", "-C", str(work / "reference")], input=archive.stdout, check=True)
        weights: dict[str, str] = {}
        inputs: dict[str, np.ndarray] = {}
        cases = []
        for name in names:
            case = CASES[name]
            if case.model not in weights:
                path = shipped if case.model == "shipped" else work / f"{case.model}.safetensors"
                if case.model != "shipped":
                    save(case_model(case.model), path)
                weights[case.model] = str(path.resolve())
            model = load(shipped) if case.model == "shipped" else case_model(case.model)
            inputs[name] = case_images(case, model).numpy()
            labels = list(case.labels) if isinstance(case.labels, tuple) else case.labels
            cases.append(
                {
                    "name": name,
                    "model": case.model,
                    "labels": labels,
                    "out": str((out / f"{name}.bin").resolve()),
                }
            )
        np.savez(work / "inputs.npz", **inputs)
        job = {"weights": weights, "inputs": str(work / "inputs.npz"), "cases": cases}
        (work / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "PYTHONPATH": str(work / "reference")}
        subprocess.run(
            [sys.executable, "-c", REFERENCE_RUNNER, str(work / "job.json")],
            cwd=work / "reference",
            env=env,
            check=True,
        )
    probes_file = out / PLATFORM_FILE
    probes = json.loads(probes_file.read_text()) if probes_file.is_file() else {}
    for name in {CASES[n].model for n in names}:
        probes[name] = platform_probe(load(shipped) if name == "shipped" else case_model(name))
    probes_file.write_text(json.dumps(probes, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.codec_fixtures", description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="*", help=f"case names (default: all): {', '.join(CASES)}")
    p.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS, help="the weights of the 'shipped' cases")
    p.add_argument("--out", type=Path, default=FIXTURES)
    p.add_argument("--model", default=None, help="only the cases of this model, e.g. shipped")
    args = p.parse_args(argv)
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    names = [n for n in args.cases or CASES if args.model is None or CASES[n].model == args.model]
    try:
        write_with_reference_encoder(names, args.weights, args.out)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
