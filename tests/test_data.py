"""The Fashion-MNIST loader: real files, a fixed validation split, clear errors on bad files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from model.data import DEFAULT_DATA_DIR, FILES, DatasetError, dequantize, load_fashion_mnist, quantize


def test_reads_the_real_files_with_a_disjoint_validation_split() -> None:
    train = load_fashion_mnist("train")
    val = load_fashion_mnist("validation")
    test = load_fashion_mnist("test")
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    assert train.images.shape == (55_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert set(test.labels.tolist()) == set(range(10))
    # The two parts of the training file do not overlap and together give all 60,000.
    both = load_fashion_mnist("train+validation")
    assert len(both) == 60_000
    keys = {
        bytes(img.numpy().tobytes()) + bytes([int(y)])
        for img, y in zip(val.images[:200], val.labels[:200], strict=True)
    }
    train_keys = {
        bytes(img.numpy().tobytes()) + bytes([int(y)])
        for img, y in zip(train.images, train.labels, strict=True)
    }
    assert not keys & train_keys
    assert torch.equal(load_fashion_mnist("validation").labels, val.labels)  # fixed split


def test_resizes_when_asked() -> None:
    small = load_fashion_mnist("test", image_size=14)
    assert small.images.shape == (10_000, 1, 14, 14)


def copy_data(tmp_path: Path) -> Path:
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    return tmp_path


def test_missing_directory_names_the_path_and_the_package(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_fashion_mnist("test", tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "dataset-fashion-mnist" in str(err.value)


def test_environment_variable_overrides_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXELCNN_DATA_DIR", str(copy_data(tmp_path)))
    assert len(load_fashion_mnist("test")) == 10_000
    monkeypatch.setenv("PIXELCNN_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="empty"):
        load_fashion_mnist("test")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "magic"),
        (lambda raw: raw[:-100], "holds"),
        (lambda raw: raw[:10], "header|holds"),
    ],
)
def test_corrupted_image_files_are_rejected(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    directory = copy_data(tmp_path)
    path = directory / FILES["test"][0]
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(damage(raw)))
    with pytest.raises(DatasetError, match=message):
        load_fashion_mnist("test", directory)


def test_a_file_that_is_not_gzip_is_rejected(tmp_path: Path) -> None:
    directory = copy_data(tmp_path)
    (directory / FILES["test"][1]).write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="gzip"):
        load_fashion_mnist("test", directory)


def test_quantize_and_dequantize() -> None:
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(quantize(x, 256), x.long())
    q = quantize(x, 4)
    assert q.min() == 0 and q.max() == 3
    assert torch.equal(quantize(dequantize(q, 4), 4), q)
