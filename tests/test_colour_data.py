"""Colour data: folders and .npz files read in RGB, the emoji data set rendered from Debian's
Noto Color Emoji, and a colour model trained, exported and evaluated on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import evaluate, export, train
from model.checkpoint import load, read_metadata
from model.data import DatasetError
from model.data.sources import load_cache, open_source

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--channels", "24", "--layers", "2", "--head-channels", "24", "--no-samples", "--quiet"]
FAST = ["--batch-size", "32", "--lr", "3e-3", "--warmup-steps", "5", "--threads", "2"]


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emoji") / "emoji-8"
    subprocess.run([sys.executable, "scripts/emoji-folder", str(out), "--size", "8"], check=True, cwd=ROOT)
    return out


def _group(name: str) -> str:
    """The emoji a file shows, skin tones aside: flags are whole, others their first code point."""
    points = name.removesuffix(".png").split("-")
    return name if points[0].startswith("1f1") and 0x1F1E6 <= int(points[0], 16) <= 0x1F1FF else points[0]


def test_the_emoji_folder_is_rgb_and_split_by_emoji(emoji: Path) -> None:
    listing = (emoji / "LIST.txt").read_text().splitlines()
    assert listing[0].startswith("font sha256 ") and listing[1] == "size 8"
    assert listing[2].startswith("renderer Pillow ")
    files = listing[3:]
    train_files = [f for f in files if f.startswith("train/")]
    test_files = [f for f in files if f.startswith("test/")]
    assert len(train_files) > 1500 and 100 < len(test_files) < len(train_files) / 5
    assert sorted(str(p.relative_to(emoji)) for p in emoji.rglob("*.png")) == sorted(files)
    train_groups = {_group(f.split("/")[1]) for f in train_files}
    test_groups = {_group(f.split("/")[1]) for f in test_files}
    assert not train_groups & test_groups  # no test image is a training image in another skin tone
    assert {"train/1f44d-1f3fb.png", "train/1f44d.png"} <= set(files) or "1f44d" in test_groups
    grinning = next(emoji.glob("*/1f600.png"))
    pixels = np.asarray(Image.open(grinning))
    assert pixels.shape == (8, 8, 3)
    red, _, blue = pixels.reshape(-1, 3).astype(float).mean(0)
    assert red > blue + 40  # a yellow face on black
    flags = [f for f in files if _group(f.split("/")[1]) == f.split("/")[1]]
    assert len(flags) > 150


def _save(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_a_folder_is_read_in_rgb_whatever_each_file_mode(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _save(folder / "a-red.png", Image.new("RGB", (8, 8), (255, 0, 0)))
    _save(folder / "b-green-half-transparent.png", Image.new("RGBA", (8, 8), (0, 255, 0, 128)))
    _save(folder / "c-blue-palette.gif", Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"))
    _save(folder / "d-gray.png", Image.new("L", (8, 8), 100))
    _save(folder / "e-white-16-bit.png", Image.new("I;16", (8, 8), 65535))
    _save(folder / "f-large-cmyk.jpg", Image.new("CMYK", (80, 80), (0, 255, 255, 0)))  # red, 10x larger
    data = open_source(folder, 8, colours=3)
    assert tuple(data.pool.images.shape[1:]) == (3, 8, 8)
    first_pixels = [tuple(int(v) for v in image[:, 0, 0]) for image in data.pool.images]
    # Shuffled into the validation split or not, each file's colour is among the six.
    expected = {(255, 0, 0), (0, 128, 0), (0, 0, 255), (100, 100, 100), (255, 255, 255)}
    assert set(first_pixels) <= expected | {(254, 0, 0)}  # JPEG may round red
    assert {(0, 128, 0), (100, 100, 100), (255, 255, 255)} <= set(first_pixels)
    assert "8x8 RGB" in data.describe(0.1)
    gray = open_source(folder, 8)
    assert tuple(gray.pool.images.shape[1:]) == (1, 8, 8) and "8x8 grayscale" in gray.describe(0.1)


def test_npz_colour_arrays_and_what_a_colour_mismatch_says(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "colour.npz"
    np.savez(path, images=rgb, test_images=test)
    data = open_source(path, colours=3)
    assert data.channels == 3
    assert data.test is not None and np.array_equal(data.test.images.numpy(), test.transpose(0, 3, 1, 2))
    pooled = {image.tobytes() for image in data.pool.images.numpy()}
    assert pooled == {image.transpose(2, 0, 1).tobytes() for image in rgb}  # channels land in order
    data.save(tmp_path)
    cached = load_cache(tmp_path)
    assert cached is not None and cached.fingerprint == data.fingerprint  # the run cache keeps colour

    with pytest.raises(DatasetError, match=r"holds RGB images, not grayscale; train with --image-channels 3"):
        open_source(path)
    gray = tmp_path / "gray.npz"
    np.savez(gray, images=rgb[..., 0])
    with pytest.raises(DatasetError, match=r"holds grayscale images, not RGB; --image-channels 3 needs RGB"):
        open_source(gray, colours=3)
    with pytest.raises(DatasetError, match=r"Fashion-MNIST: holds grayscale images"):
        open_source(None, colours=3)
    four = tmp_path / "rgba.npz"
    np.savez(four, images=rng.integers(0, 256, (3, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"\(N, H, W, 3\) RGB images are accepted"):
        open_source(four, colours=3)


def test_a_colour_model_trains_exports_and_evaluates_on_emoji(
    emoji: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["--data", str(emoji), "--image-channels", "3", "--no-cond", "--train-limit", "480"]
    args += ["--epochs", "4", "--run-dir", str(run)]
    assert train.main(args + TINY + FAST) == 0
    assert "emoji-8, 8x8" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = [row["bits_per_dim"] for row in rows if row["kind"] == "validation"]
    assert len(curve) == 4 and curve[-1] < min(curve[0] - 0.3, 7.5), curve  # 8: a uniform guess
    out = tmp_path / "emoji.safetensors"
    assert export.main(["--run-dir", str(run), "--out", str(out), "--no-pictures"]) == 0
    model = load(out)
    assert model.config.image_channels == 3 and model.config.image_size == 8
    meta = read_metadata(out)
    assert "8x8 RGB, no classes" in meta["data"]
    capsys.readouterr()
    assert evaluate.main(["--weights", str(out), "--data", str(emoji)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["bits_per_dim"] == pytest.approx(float(meta["test_bits_per_dim"]), abs=1e-4)

    # Fine-tuning follows the file's colours; a flag that contradicts them stops with one line.
    more = ["--data", str(emoji), "--init-from", str(out), "--train-limit", "64", "--epochs", "1"]
    quiet = ["--no-samples", "--quiet", *FAST]
    assert train.main([*more, "--run-dir", str(tmp_path / "more"), *quiet]) == 0
    capsys.readouterr()
    assert train.main([*more, "--image-channels", "1", "--run-dir", str(tmp_path / "gray"), *quiet]) == 2
    assert "--image-channels 1, but emoji.safetensors draws RGB images" in capsys.readouterr().err
    assert not (tmp_path / "gray").exists()
