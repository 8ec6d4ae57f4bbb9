"""``python -m model.ship`` end to end, on a copy of the tree's shipped parts and tiny models:
a worse candidate is refused and changes nothing; a better one replaces the shipped file and
everything made from it follows (pictures, codec fixtures, pins, figures, README and card)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import file_sha256, load, save
from model.codec import decompress
from model.data import FASHION_CLASSES, load_fashion_mnist
from model.network.pixelcnn import PixelCNN
from model.ship import PINS_FILE, STEM
from model.shipping.documents import replace_blocks
from model.shipping.figures import ShipError, refusals
from tests.codec_fixtures import CASES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PARTS = (
    "README.md",
    "weights/README.md",
    "weights/fmnist-classifier.safetensors",
    "docs",
    "tests/fixtures",
)
FAST = ["--limit", "200", "--per-class", "10", "--compression-images", "64"]
JUDGE = ["--judge", str(ROOT / "weights" / "fmnist-classifier.safetensors")]  # no judge to train


def named(model: PixelCNN) -> PixelCNN:
    """``model`` with Fashion-MNIST's class names in its config, as a shipped file has."""
    out = PixelCNN(dataclasses.replace(model.config, class_names=FASHION_CLASSES))
    out.load_state_dict(model.state_dict())
    return out.eval()


def uniform(like: PixelCNN) -> PixelCNN:
    """The same network with every weight zero: 8 bits/dim, samples of pure noise."""
    out = named(like)
    with torch.no_grad():
        for p in out.parameters():
            p.zero_()
    return out


def tree_copy(tmp_path: Path, shipped: PixelCNN) -> Path:
    root = tmp_path / "tree"
    for part in SHIPPED_PARTS:
        source, target = ROOT / part, root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    save(shipped, root / "weights" / f"{STEM}.safetensors", test_bits_per_dim=8.0)
    return root


def ship(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "model.ship", *args, "--root", str(root), "--cache", str(cache)]
    return subprocess.run(command + FAST + JUDGE, cwd=ROOT, capture_output=True, text=True, timeout=900)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_worse_candidate_is_refused_and_nothing_changes(tmp_path: Path, trained_model: PixelCNN) -> None:
    root = tree_copy(tmp_path, named(trained_model))
    worse = tmp_path / "worse.safetensors"
    save(uniform(trained_model), worse)
    before = snapshot(root)
    result = ship(root, tmp_path / "cache", str(worse))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not shipped" in result.stdout and "test bits/dim 8.0 is not below" in result.stdout
    assert "test bits/dim" in result.stdout and "class fidelity" in result.stdout  # its figures, side by side
    assert snapshot(root) == before


def test_a_better_candidate_is_shipped_with_everything_made_from_it(
    tmp_path: Path, trained_model: PixelCNN
) -> None:
    root = tree_copy(tmp_path, uniform(trained_model))
    old_readme = (root / "README.md").read_text()
    better = tmp_path / "better.safetensors"
    save(named(trained_model), better, test_bits_per_dim=4.0)
    dry = ship(root, tmp_path / "cache", str(better), "--dry-run")
    assert dry.returncode == 0 and "it would be shipped" in dry.stdout, dry.stdout + dry.stderr
    assert (root / "README.md").read_text() == old_readme
    result = ship(root, tmp_path / "cache", str(better))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "figures measured before" in result.stdout  # the dry run's measurements were kept

    shipped = root / "weights" / f"{STEM}.safetensors"
    assert file_sha256(shipped) == file_sha256(better)
    figures = json.loads((root / "weights" / f"{STEM}.figures.json").read_text())
    current, before = figures["current"], figures["history"][0]
    assert current["sha256"] == file_sha256(better) and before["test_bits_per_dim"] == 8.0
    assert current["test_bits_per_dim"] < 8.0 and current["fidelity"] > before["fidelity"]
    # The documents state the new figures, and the card keeps the old file in its lineage.
    readme, card = (root / "README.md").read_text(), (root / "weights" / "README.md").read_text()
    assert f"`test: 200 images, {current['test_bits_per_dim']:.4f} bits/dim`" in readme
    assert f"**Test {current['test_bits_per_dim']:.3f} bits/dim**" in card
    assert f"`{before['sha256'][:8]}`" in card and f"`{current['sha256'][:8]}`" in card
    # The README's pictures are what the service answers for the new file.
    for name in (
        "generate-sneakers",
        "complete-top-half",
        "likelihood-heatmap",
        "upscale-factor-4",
        "upscale",
    ):
        assert file_sha256(root / "docs" / f"{name}.png") != file_sha256(ROOT / "docs" / f"{name}.png"), name
    # Codec fixtures for the new file, made by the reference encoder, decode with today's decoder.
    model = load(shipped)
    test = load_fashion_mnist("test")
    for name, case in CASES.items():
        if case.model == "shipped":
            data = (root / "tests" / "fixtures" / "codec" / f"{name}.bin").read_bytes()
            assert torch.equal(decompress(model, data), test.images[case.first : case.first + case.count])
    pins = json.loads((root / PINS_FILE).read_text())
    assert pins["sha256"] == file_sha256(better)
    from model.inference.generation import generate

    images = generate(model, **pins["generate"])
    assert hashlib.sha256(images.numpy().tobytes()).hexdigest() == pins["images_sha256"]


def test_the_rule_needs_fewer_bits_higher_fidelity_and_no_higher_fid() -> None:
    shipped = {"test_bits_per_dim": 2.85, "fidelity": 0.78, "fid": 130.0}
    assert refusals({"test_bits_per_dim": 2.84, "fidelity": 0.79, "fid": 130.0}, shipped) == []
    assert len(refusals({"test_bits_per_dim": 2.85, "fidelity": 0.79, "fid": 120.0}, shipped)) == 1
    assert len(refusals({"test_bits_per_dim": 2.80, "fidelity": 0.78, "fid": 120.0}, shipped)) == 1
    assert len(refusals({"test_bits_per_dim": 2.80, "fidelity": 0.90, "fid": 130.5}, shipped)) == 1


def test_a_document_without_its_markers_is_refused() -> None:
    text = "a <!-- ship:figures -->old<!-- /ship:figures --> b"
    assert (
        replace_blocks(text, {"figures": "new"}, "README.md")
        == "a <!-- ship:figures -->new<!-- /ship:figures --> b"
    )
    with pytest.raises(ShipError, match="expected one block"):
        replace_blocks("no markers", {"figures": "new"}, "README.md")


def test_a_candidate_of_another_shape_is_refused_with_one_line(
    tmp_path: Path, trained_model: PixelCNN
) -> None:
    from tests.conftest import random_model

    root = tree_copy(tmp_path, named(trained_model))
    other = tmp_path / "small.safetensors"
    save(random_model("gated", 4, size=12, levels=256, class_names=("a", "b", "c", "d")), other)
    result = ship(root, tmp_path / "cache", str(other))
    assert result.returncode == 2 and "only such a file can replace it" in result.stderr
    assert "Traceback" not in result.stderr
