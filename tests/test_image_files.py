"""The commands read image files as the service reads uploads (``model.pictures``): any
accepted format and mode, 16-bit gray scaled rather than clipped, and a bad file is a
one-line error, never a traceback or a silently wrong result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import downscale, save
from model.codec.__main__ import main as codec_main
from model.pictures import read_small_image
from model.sample import main as sample_main
from tests.conftest import random_model
from tests.test_bad_input import png_header_only


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save(random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=5), path)
    return path


def sixteen_bit(side: int, seed: int) -> tuple[np.ndarray, Image.Image]:
    """A 16-bit gray image of random values and the 8-bit image it stands for."""
    values = np.random.default_rng(seed).integers(0, 65536, (side, side)).astype(np.uint16)
    picture = Image.fromarray(values)  # mode I;16
    return np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8), picture


def grid_cells(path: Path, n: int) -> torch.Tensor:
    """The ``n`` 28x28 cells of a scale-1 grid in one row, ``(n, 1, 28, 28)``."""
    grid = torch.from_numpy(np.asarray(Image.open(path)).copy())
    return torch.stack([grid[2:30, 2 + 30 * k : 30 + 30 * k] for k in range(n)]).unsqueeze(1)


def test_a_16_bit_small_image_is_scaled_not_clipped_and_its_size_gives_the_factor(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected, picture = sixteen_bit(7, seed=3)
    picture.save(tmp_path / "small16.png")
    out = tmp_path / "big.png"
    argv = ["upscale", str(tmp_path / "small16.png"), "--n", "2", "--particles", "2", "--scale", "1"]
    assert sample_main([*argv, "--weights", str(weights), "--out", str(out), "--label", "Boot"]) == 0
    said = capsys.readouterr().out
    assert "factor 4" in said and "labels ankle-boot, ankle-boot" in said  # the service's aliases
    assert bool((downscale(grid_cells(out, 2), 4) == torch.from_numpy(expected)).all())
    # The same bytes give the service the same small image.
    small, factor = read_small_image((tmp_path / "small16.png").read_bytes(), "image", 28, 256, None, 10**6)
    assert factor == 4 and bool((small[0] == torch.from_numpy(expected)).all())


def test_the_codec_command_reads_a_16_bit_image_as_the_service_does(tmp_path: Path, weights: Path) -> None:
    expected, picture = sixteen_bit(28, seed=4)
    picture.save(tmp_path / "full16.png")
    packed, back = tmp_path / "x.pcnn", tmp_path / "back.png"
    assert codec_main(["compress", str(tmp_path / "full16.png"), str(packed), "--weights", str(weights)]) == 0
    assert codec_main(["decompress", str(packed), str(back), "--weights", str(weights)]) == 0
    assert np.array_equal(np.asarray(Image.open(back)), expected)


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its error must say)."""
    (tmp_path / "junk.png").write_bytes(b"these bytes are not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    Image.fromarray(np.zeros((13, 13), np.uint8)).save(tmp_path / "odd.png")
    return {
        "missing": (tmp_path / "nope.png", "No such file"),
        "junk": (tmp_path / "junk.png", "not an image in an accepted format"),
        "empty": (tmp_path / "empty.png", "is empty"),
        "bomb": (tmp_path / "bomb.png", "too many pixels"),
        "odd size": (tmp_path / "odd.png", "a 13x13 image matches no factor"),
    }


@pytest.mark.parametrize("case", ["missing", "junk", "empty", "bomb", "odd size"])
def test_a_bad_small_image_is_a_one_line_error(
    tmp_path: Path, weights: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, says = bad_files(tmp_path)[case]
    with pytest.raises(SystemExit) as exit_:
        sample_main(["upscale", str(path), "--n", "1", "--particles", "1", "--weights", str(weights)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--label", "Shirtz"], "--label 'Shirtz' is not a class"),
        (["--label", "²"], "--label '²' is not a class"),
        (["--label=--1"], "--label '--1' is not a class"),
        (["--label", "-1"], "labels must be in 0..9"),
        (["--weights", "nowhere.safetensors"], "nowhere.safetensors"),
        (["--factor", "3"], "factor must be 2, 4 or 7, got 3"),
        (["--scale", "0"], "--scale must be at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, weights: Path, extra: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(tmp_path / "small.png")
    argv = ["upscale", str(tmp_path / "small.png"), "--n", "1", "--particles", "1", "--weights", str(weights)]
    with pytest.raises(SystemExit):
        sample_main([*argv, "--out", str(tmp_path / "big.png"), *extra])
    assert says in capsys.readouterr().err
    assert not (tmp_path / "big.png").exists()


def test_an_unwritable_out_fails_before_any_sampling(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr("model.sample.upscale", never)
    monkeypatch.setattr("model.sample.generate", never)
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(tmp_path / "small.png")
    outs = {
        str(tmp_path / "no-such-dir" / "big.png"): "its directory does not exist",
        str(tmp_path / "no-such-dir" / ".." / "big.png"): "its directory does not exist",
        "": "must be a file name ending in a picture's extension",
        str(tmp_path): "must be a file name ending in a picture's extension",
        str(tmp_path / "noext"): "must be a file name ending in a picture's extension",
    }
    for out, says in outs.items():
        for argv in (
            ["upscale", str(tmp_path / "small.png"), "--weights", str(weights), "--out", out],
            ["--weights", str(weights), "--out", out, "--n", "1"],
        ):
            with pytest.raises(SystemExit):
                sample_main(argv)
            assert says in capsys.readouterr().err, (out, argv)


def test_the_sample_command_refuses_a_label_the_model_does_not_have(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for label in ("99", "-1"):
        with pytest.raises(SystemExit) as exit_:
            sample_main(
                ["--weights", str(weights), "--n", "1", "--label", label, "--out", str(tmp_path / "s.png")]
            )
        assert exit_.value.code == 2 and "labels must be in 0..9" in capsys.readouterr().err


def test_the_codec_command_says_what_is_wrong_with_a_bad_file(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for case, (path, says) in bad_files(tmp_path).items():
        assert codec_main(["compress", str(path), str(tmp_path / "x"), "--weights", str(weights)]) == 1, case
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (case, err)
        if case != "odd size":  # the codec wants the model's size: its own message
            assert says in err, (case, err)
