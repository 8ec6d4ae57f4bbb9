"""Training on your own images: a PNG class folder, an .npz file and IDX files each train,
export and evaluate; every bad input stops the run with one line and leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model import evaluate, export, train
from model.checkpoint import load, read_metadata
from tests.own_data import NAMES, png_bytes, real_images, write_folder, write_idx, write_split_folder

TINY = ["--channels", "16", "--layers", "2", "--head-channels", "16", "--no-samples", "--quiet"]
FAST = ["--batch-size", "32", "--lr", "3e-3", "--warmup-steps", "5", "--threads", "2"]


def write_npz(path: Path) -> Path:
    images, labels = real_images(300)
    test_images, test_labels = real_images(60, offset=300)
    np.savez(
        path,
        images=images,
        labels=labels,
        class_names=np.array(NAMES),
        test_images=test_images,
        test_labels=test_labels,
    )
    return path


def write_idx_folder(folder: Path) -> Path:
    write_idx(folder, "train", *real_images(300))
    write_idx(folder, "t10k", *real_images(60, offset=300), gz=False)
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return folder


SOURCES: dict[str, Callable[[Path], Path]] = {
    "png folder": lambda tmp: write_split_folder(tmp / "clothes", 300, 60),
    "npz": lambda tmp: write_npz(tmp / "clothes.npz"),
    "idx folder": write_idx_folder,
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_source_trains_exports_and_evaluates(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = SOURCES[kind](tmp_path / "data" if kind == "idx folder" else tmp_path)
    run = tmp_path / "run"
    args = ["--data", str(source), "--image-size", "16", "--max-steps", "40", "--run-dir", str(run)]
    assert train.main(args + TINY + FAST) == 0
    printed = capsys.readouterr().out
    assert f"classes: {', '.join(NAMES)}" in printed
    validation = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    curve = [row["bits_per_dim"] for row in validation if row["kind"] == "validation"]
    assert len(curve) >= 3 and curve[-1] < curve[0] - 0.3, curve  # the loss goes down
    assert (run / "data.npz").is_file()  # decoded once, cached for --resume and export

    out = tmp_path / "mine.safetensors"
    assert export.main(["--run-dir", str(run), "--out", str(out), "--no-pictures"]) == 0
    model = load(out)
    assert model.config.image_size == 16 and model.config.class_names == NAMES
    meta = read_metadata(out)
    assert len(meta["data_sha256"]) == 64 and "16x16 grayscale, 3 classes" in meta["data"]
    assert float(meta["test_bits_per_dim"]) == pytest.approx(curve[-1], abs=0.5)
    capsys.readouterr()

    assert evaluate.main(["--weights", str(out), "--data", str(source)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 60 and set(result["per_class"]) == set(NAMES)
    assert result["bits_per_dim"] == pytest.approx(float(meta["test_bits_per_dim"]), abs=1e-4)


def test_resume_reads_the_cache_not_the_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pics", *real_images(200))
    run = tmp_path / "run"
    base = ["--run-dir", str(run), *TINY, *FAST]
    assert train.main(["--data", str(folder), "--max-steps", "5", *base]) == 0
    for png in folder.rglob("*.png"):
        png.unlink()  # the source is gone: a resumed run and its export still have the data
    assert train.main(["--resume", "--max-steps", "8", *base]) == 0
    assert export.main(["--run-dir", str(run), "--limit", "10", "--no-pictures"]) == 0
    assert load(run / "model.safetensors").config.class_names == NAMES


def test_an_unconditional_folder_and_non_square_images_of_several_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "flat"
    folder.mkdir()
    images, _ = real_images(40)
    for k, image in enumerate(images):
        # Widen every image with black borders: a centre crop gives back the original.
        wide = np.zeros((28, 28 + 2 * (k % 3) * 6), np.uint8)
        wide[:, (k % 3) * 6 : (k % 3) * 6 + 28] = image
        (folder / f"{k:03d}.png").write_bytes(png_bytes(wide))
    run = tmp_path / "run"
    code = train.main(["--data", str(folder), "--max-steps", "2", "--run-dir", str(run), *TINY, *FAST])
    assert code == 2  # several sizes and no --image-size
    assert not run.exists()
    args = ["--data", str(folder), "--image-size", "28", "--max-steps", "2", "--run-dir", str(run)]
    assert train.main(args + TINY + FAST) == 0
    from model.data.sources import load_cache

    cached = load_cache(run)
    assert cached is not None and cached.class_names is None
    assert np.array_equal(cached.pool.images[:, 0].numpy(), images)  # crop, no resize: exact


def _one_image(tmp: Path) -> Path:
    (tmp / "one").mkdir()
    (tmp / "one" / "a.png").write_bytes(png_bytes(real_images(1)[0][0]))
    return tmp / "one"


def _with_file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        folder = write_folder(tmp / "pics", *real_images(30))
        (folder / NAMES[0] / name).write_bytes(data)
        return folder

    return make


def _npz(**arrays: np.ndarray) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        np.savez(tmp / "set.npz", **arrays)  # type: ignore[arg-type]
        return tmp / "set.npz"

    return make


def _empty_test_split(tmp: Path) -> Path:
    write_folder(tmp / "pics" / "train", *real_images(30))
    (tmp / "pics" / "test").mkdir()
    return tmp / "pics"


def _empty_class(tmp: Path) -> Path:
    folder = write_folder(tmp / "pics", *real_images(30))
    (folder / "zebra").mkdir()
    return folder


GOOD = real_images(30)[0]
TRUNCATED = png_bytes(GOOD[0])[:60]
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], list[str], str]] = {
    "empty folder": (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", [], "no images found"),
    "one image": (_one_image, [], "1 training image(s); at least 2 are needed"),
    "not an image": (_with_file("notes.txt", b"hello"), [], "notes.txt' is not an image"),
    "damaged png": (_with_file("broken.png", TRUNCATED), [], "broken.png' is truncated or corrupt"),
    "zero bytes": (_with_file("zero.png", b""), [], "zero.png' is empty"),
    "class without images": (_empty_class, [], "class 'zebra' has no images"),
    "empty test split": (_empty_test_split, [], "the test split holds no images"),
    "missing source": (lambda tmp: tmp / "nowhere", [], "nowhere: not found"),
    "a file that is not npz": (
        lambda tmp: (tmp / "x.csv").write_text("1,2") and tmp / "x.csv",
        [],
        "not an .npz",
    ),
    "npz length mismatch": (
        _npz(images=GOOD, labels=np.zeros(29, np.int64)),
        [],
        "'labels' has 29 entries but 'images' has 30 images",
    ),
    "npz label out of range": (
        _npz(images=GOOD, labels=np.full(30, 3), class_names=np.array(NAMES)),
        [],
        "labels holds 3, outside 0..2",
    ),
    "npz not uint8": (_npz(images=GOOD.astype(np.float32)), [], "dtype float32; uint8 (0..255) is accepted"),
    "npz class without images": (
        _npz(images=GOOD, labels=np.arange(30) % 2, class_names=np.array(NAMES)),
        [],
        "class 'trouser' has no training images",
    ),
    "size below 8": (_npz(images=GOOD), ["--image-size", "4"], "image size 4 is not accepted: use 8 to 64"),
    "size above 64": (_npz(images=GOOD), ["--image-size", "65"], "image size 65 is not accepted"),
    "native size above 64": (
        _npz(images=np.zeros((4, 80, 80), np.uint8)),
        [],
        "image size 80 is not accepted",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_data_stops_with_one_line_and_no_run_directory(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, extra, message = BAD_INPUTS[case]
    source = make(tmp_path)
    run = tmp_path / "run"
    assert train.main(["--data", str(source), "--run-dir", str(run), "--max-steps", "1", *extra, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert not run.exists()


def test_skip_bad_files_trains_on_the_rest_and_lists_what_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _with_file("broken.png", TRUNCATED)(tmp_path)
    (folder / NAMES[1] / "zero.png").write_bytes(b"")
    run = tmp_path / "run"
    args = ["--data", str(folder), "--skip-bad-files", "--run-dir", str(run), "--max-steps", "2"]
    assert train.main(args + TINY + FAST + ["--batch-size", "8"]) == 0
    assert "skipped 2 unreadable files" in capsys.readouterr().out
    listed = (run / "skipped-files.txt").read_text()
    assert listed.startswith("2 files skipped") and "broken.png" in listed and "zero.png" in listed


def test_evaluate_says_when_a_source_has_no_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "pics", *real_images(40))
    run = tmp_path / "run"
    assert train.main(["--data", str(folder), "--max-steps", "2", "--run-dir", str(run), *TINY, *FAST]) == 0
    assert export.main(["--run-dir", str(run), "--no-pictures"]) == 0
    weights = str(run / "model.safetensors")
    capsys.readouterr()
    assert evaluate.main(["--weights", weights, "--data", str(folder)]) == 2
    assert "has no test split" in capsys.readouterr().err
    assert evaluate.main(["--weights", weights, "--data", str(folder), "--split", "validation"]) == 0
