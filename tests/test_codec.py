"""Lossless compression: exact round trips, damage always detected, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import save
from model.classifier import DEFAULT_CLASSIFIER, load_classifier
from model.codec import (
    TRIM_MAX_IMAGES,
    CodecError,
    best_labels,
    compress,
    compress_with_stats,
    decompress,
)
from model.codec.__main__ import main
from model.codec.container import HEADER_BYTES, unpack
from model.data import load_fashion_mnist
from model.inference.likelihood import log_likelihood
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model, threads


def round_trip(model: PixelCNN, images: torch.Tensor, encode_threads: int, decode_threads: int) -> bytes:
    with threads(encode_threads):
        data = compress(model, images)
        assert torch.get_num_threads() == encode_threads  # the codec restores the caller's setting
    with threads(decode_threads):
        decoded = decompress(model, data)
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, images.to(torch.uint8))
    return data


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_fashion_mnist("test").images[:40]


def test_round_trip_is_exact_on_a_few_hundred_real_images(trained_model: PixelCNN) -> None:
    images = load_fashion_mnist("test").images[1000:1256]
    data = round_trip(trained_model, images, 1, 2)  # 8 coder batches of 32 in one container
    assert unpack(data)[0].count == 256


@pytest.mark.parametrize(
    ("batch", "start", "encode_threads", "decode_threads"),
    [(1, 0, 1, 2), (1, 1, 2, 1), (16, 2, 1, 2), (16, 18, 2, 1)],
)
def test_round_trip_is_exact_on_real_images(
    trained_model: PixelCNN,
    test_images: torch.Tensor,
    batch: int,
    start: int,
    encode_threads: int,
    decode_threads: int,
) -> None:
    round_trip(trained_model, test_images[start : start + batch], encode_threads, decode_threads)


def test_file_size_is_the_ideal_bits_plus_the_container(
    trained_model: PixelCNN, test_images: torch.Tensor
) -> None:
    for x in (test_images[:1], test_images[:4]):
        data, bits = compress_with_stats(trained_model, x)
        with threads(1):  # as fast as the codec on a busy machine
            labels = best_labels(trained_model, x)
            reference = float(log_likelihood(trained_model, x.long(), labels).total_bits.sum())
        assert bits == pytest.approx(reference, rel=1e-4)  # the coded probabilities are the model's
        overhead = len(data) - bits / 8
        # The header, a flush of a few bytes (less after trimming), 3.3 bits a label.
        assert HEADER_BYTES - 1 < overhead < HEADER_BYTES + 5 + 0.5 * len(x)
        assert 8 * len(data) < 6.5 * x.numel()  # a briefly trained model: well under 8 bits a pixel


def test_trimming_leaves_about_a_byte_of_flush_per_file(
    trained_model: PixelCNN, test_images: torch.Tensor
) -> None:
    flush = []
    for k in range(12):
        data, bits = compress_with_stats(trained_model, test_images[k : k + 1])
        assert torch.equal(decompress(trained_model, data), test_images[k : k + 1])
        flush.append(len(data) - HEADER_BYTES - bits / 8 - math.log2(10) / 8)
    # Whole 32-bit words would leave about 2 bytes on average; trimmed, well under 1.5.
    assert sum(flush) / len(flush) < 1.5, flush


def test_more_images_than_are_trimmed_round_trip() -> None:
    model = random_model("gated", 10, size=6, channels=8, layers=2, seed=5)
    images = torch.randint(
        0, 16, (TRIM_MAX_IMAGES + 170, 1, 6, 6), generator=torch.Generator().manual_seed(5)
    )
    data = round_trip(model, images, 1, 1)
    assert unpack(data)[0].count == len(images)  # more than one coder batch, untrimmed


def test_the_best_label_costs_the_fewest_bits(trained_model: PixelCNN, test_images: torch.Tensor) -> None:
    x = test_images[:2]
    best = compress_with_stats(trained_model, x)[1]
    for y in (0, 9):
        data, bits = compress_with_stats(trained_model, x, labels=y)
        assert best <= bits + 1e-6
        assert torch.equal(decompress(trained_model, data), x)


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
@pytest.mark.parametrize("num_classes", [10, None])
@pytest.mark.parametrize("batch", [1, 16])
def test_round_trip_is_exact_on_noise(arch: str, num_classes: int | None, batch: int) -> None:
    model = random_model(arch, num_classes, seed=3)
    noise = torch.randint(0, 16, (batch, 1, 10, 10), generator=torch.Generator().manual_seed(batch))
    round_trip(model, noise, 2, 1)
    round_trip(model, noise, 1, 2)


def test_round_trip_is_exact_on_noise_the_trained_model_finds_very_unlikely(trained_model: PixelCNN) -> None:
    noise = torch.randint(
        0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    data = round_trip(trained_model, noise, 1, 2)
    assert len(data) > 2 * 784  # more than 8 bits a pixel: the model is sure these are not clothes


def test_empty_input_round_trips() -> None:
    model = random_model("gated", 10)
    data = compress(model, torch.zeros(0, 1, 10, 10, dtype=torch.uint8))
    assert len(data) == HEADER_BYTES
    assert decompress(model, data).shape == (0, 1, 10, 10)


@pytest.fixture(scope="module")
def small() -> tuple[PixelCNN, torch.Tensor, bytes]:
    model = random_model("gated", 10, size=8, channels=8, layers=2, seed=4)
    image = torch.randint(0, 16, (1, 1, 8, 8), generator=torch.Generator().manual_seed(4))
    return model, image, compress(model, image)


def test_every_flipped_byte_is_detected(small: tuple[PixelCNN, torch.Tensor, bytes]) -> None:
    model, _, data = small
    assert len(data) > HEADER_BYTES + 16
    for pos in range(len(data)):
        for mask in (1 << (pos % 8), 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            with pytest.raises(CodecError):
                decompress(model, bytes(damaged))


def test_truncated_or_extended_data_is_detected(small: tuple[PixelCNN, torch.Tensor, bytes]) -> None:
    model, _, data = small
    for length in range(len(data)):
        with pytest.raises(CodecError, match=r"truncated|corrupted|magic"):
            decompress(model, data[:length])
    for extra in (b"\0", b"\0" * 4, b"\x12\x34\x56\x78"):
        with pytest.raises(CodecError):
            decompress(model, data + extra)


def test_data_from_other_weights_is_rejected(small: tuple[PixelCNN, torch.Tensor, bytes]) -> None:
    model, image, data = small
    with pytest.raises(CodecError, match="other weights"):
        decompress(random_model("gated", 10, size=8, channels=8, layers=2, seed=5), data)
    with pytest.raises(CodecError, match="8x8 images with 16 levels"):
        decompress(random_model("gated", 10, size=12), data)
    assert torch.equal(decompress(model, bytearray(data)), image)


def test_bad_inputs_raise_codec_errors(small: tuple[PixelCNN, torch.Tensor, bytes]) -> None:
    model, image, _ = small
    assert issubclass(CodecError, ValueError)
    bad_images = [image.float(), image[0], image[:, :, :7], image + 16, image - 1, image.numpy()]
    for bad in bad_images:
        with pytest.raises(CodecError):
            compress(model, bad)  # type: ignore[arg-type]
    for labels in ([1, 2], 10, -1, 2.5, "a"):
        with pytest.raises(CodecError):
            compress(model, image, labels=labels)  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="unconditional"):
        compress(random_model("gated", None, size=8), image, labels=1)
    for data in (b"", b"Px", b"PNG\r\n" * 10, "Px"):
        with pytest.raises(CodecError):
            decompress(model, data)  # type: ignore[arg-type]


def test_cli_round_trip(tmp_path: Path, trained_model: PixelCNN, test_images: torch.Tensor, capsys) -> None:  # type: ignore[no-untyped-def]
    weights = tmp_path / "w.safetensors"
    save(trained_model, weights)
    png, packed, back = tmp_path / "in.png", tmp_path / "in.pxc", tmp_path / "out.png"
    Image.fromarray(test_images[3, 0].numpy()).convert("RGB").save(png)  # converted to grayscale
    assert main(["compress", str(png), str(packed), "--weights", str(weights)]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert main(["decompress", str(packed), str(back), "--weights", str(weights)]) == 0
    assert np.array_equal(np.asarray(Image.open(back)), test_images[3, 0].numpy())
    assert packed.stat().st_size < png.stat().st_size
    x = test_images[3:4].to(torch.uint8)
    assert packed.read_bytes() == compress(trained_model, x, classifier=load_classifier(DEFAULT_CLASSIFIER))
    assert main(["compress", str(png), str(packed), "--weights", str(weights), "--fewest-bits"]) == 0
    assert packed.read_bytes() == compress(trained_model, x)

    Image.new("L", (27, 28)).save(png)
    assert main(["compress", str(png), str(packed), "--weights", str(weights)]) == 1
    assert "28x28" in capsys.readouterr().err
    packed.write_bytes(packed.read_bytes()[:-1])
    assert main(["decompress", str(packed), str(back), "--weights", str(weights)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_a_decoder_on_several_threads_that_gives_other_bits_decodes_again_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decoder runs the network on the caller's threads; should that ever give other bits
    than the encoder's one thread, the checksum catches it and one thread decodes it again.
    Corrupted data still fails, after both tries."""
    import model.codec.range_coder as range_coder

    model = random_model("gated", 10, seed=3)
    images = torch.randint(0, 16, (40, 1, 10, 10), generator=torch.Generator().manual_seed(0))
    data = compress(model, images)
    decode = range_coder._decode
    tries: list[bool] = []

    def threads_differ(model: PixelCNN, header: object, payload: bytes, reference: bool) -> object:
        tries.append(reference)
        labels, decoded = decode(model, header, payload, reference)  # type: ignore[arg-type]
        if not reference:
            decoded = decoded.clone()
            decoded[-1, 0, -1, -1] ^= 1  # one value off, as one logit one ulp off would give
        return labels, decoded

    monkeypatch.setattr(range_coder, "_decode", threads_differ)
    with threads(2):
        assert torch.equal(decompress(model, data), images.to(torch.uint8))
        assert tries == [False, True]
        tries.clear()
        damaged = bytearray(data)
        damaged[-3] ^= 0xFF
        with pytest.raises(CodecError):
            decompress(model, bytes(damaged))
        assert tries == [False, True]
    tries.clear()
    with threads(1):  # one thread is the encoder's way already: no second try
        assert torch.equal(decompress(model, data), images.to(torch.uint8))
        assert tries == [True]
