"""The codec on colour models (``image_channels=3``): each pixel's red, green and blue coded in
turn, exact round trips, sizes at the model's likelihood, files refused by a model of other
colours, the CLI and the service on colour images."""

from __future__ import annotations

import io
import json
import lzma
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import Settings
from bench.compression import main as bench_main
from model.checkpoint import save
from model.codec import TRIM_MAX_IMAGES, CodecError, best_labels, compress, compress_with_stats, decompress
from model.codec.__main__ import main
from model.codec.container import HEADER_BYTES, unpack
from model.codec.walk import teacher_forced
from model.data.sources import open_source
from model.inference.cached import cached_logits
from model.inference.likelihood import log_likelihood
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model, threads
from tests.server import running_server

SIZE = 8


def colour_model(arch: str, num_classes: int | None, *, levels: int = 16, seed: int = 4) -> PixelCNN:
    return random_model(
        arch, num_classes, size=SIZE, levels=levels, channels=8, layers=2, seed=seed, image_channels=3
    )


def noise(n: int, levels: int = 16, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, 3, size, size), generator=generator).to(torch.uint8)


def round_trip(
    model: PixelCNN, images: torch.Tensor, encode_threads: int = 1, decode_threads: int = 2
) -> bytes:
    with threads(encode_threads):
        data = compress(model, images)
    with threads(decode_threads):
        decoded = decompress(model, data)
    assert decoded.shape == images.shape and decoded.dtype == torch.uint8
    assert decoded.is_contiguous() and torch.equal(decoded, images)
    return data


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
@pytest.mark.parametrize("num_classes", [10, None])
def test_round_trips_are_exact(arch: str, num_classes: int | None) -> None:
    model = colour_model(arch, num_classes)
    for n, seed in ((1, 1), (5, 2)):
        images = noise(n, seed=seed)
        data = round_trip(model, images, 1, 2)
        header = unpack(data)[0]
        assert (header.channels, header.count, data[1]) == (3, n, 3)  # format 3: colour
        assert torch.equal(decompress(model, round_trip(model, images, 2, 1)), images)


def test_real_looking_images_round_trip_at_256_levels() -> None:
    """Smooth colour gradients (neighbouring values close, colours correlated) and flat images."""
    model = colour_model("gated", 10, levels=256, seed=6)
    ramp = torch.arange(SIZE)
    red = (ramp.view(1, -1) * 30 + ramp.view(-1, 1) * 3).clamp(0, 255)
    smooth = torch.stack([red, (red + 20).clamp(0, 255), (255 - red)]).to(torch.uint8)
    images = torch.stack([smooth, torch.zeros_like(smooth), torch.full_like(smooth, 255), noise(1, 256)[0]])
    round_trip(model, images)


def test_more_images_than_one_coder_batch_and_than_are_trimmed() -> None:
    model = random_model("gated", None, size=4, levels=16, channels=8, layers=2, seed=5, image_channels=3)
    images = noise(TRIM_MAX_IMAGES + 9, seed=3, size=4)
    data = round_trip(model, images, 2, 1)
    assert unpack(data)[0].count == len(images)


def test_colours_are_coded_in_turn_within_each_pixel() -> None:
    """Dimension ``t * 3 + k`` is colour k of pixel t (raster order): red, green, blue."""
    model = colour_model("gated", 10)
    images, labels = noise(2, seed=7), torch.tensor([3, 8])
    logits = teacher_forced(model, images, labels)  # (H * W * 3, B, levels), coding order
    reference = cached_logits(model, images, labels)  # (B, levels, 3, H, W)
    assert torch.equal(logits, reference.permute(3, 4, 2, 0, 1).reshape(-1, 2, model.config.levels))


@pytest.mark.parametrize("num_classes", [10, None])
def test_the_coded_size_is_the_models_likelihood_plus_the_container(num_classes: int | None) -> None:
    model = colour_model("gated", num_classes, levels=256, seed=2)
    for images in (noise(1, 256, seed=4), noise(4, 256, seed=5)):
        data, bits = compress_with_stats(model, images)
        with threads(1):
            labels = None if num_classes is None else best_labels(model, images)
            likelihood = log_likelihood(model, images.long(), labels)
        assert bits == pytest.approx(float(likelihood.total_bits.sum()), rel=1e-4)
        dims = len(images) * SIZE * SIZE * 3  # every colour of every pixel
        assert bits / dims == pytest.approx(float(likelihood.bits_per_dim.mean()), rel=1e-4)
        # The header, a few bytes of flush (less after trimming), 3.3 bits a label.
        overhead = len(data) - bits / 8
        assert HEADER_BYTES - 1 < overhead < HEADER_BYTES + 5 + 0.5 * len(images)


def test_the_best_label_costs_the_fewest_bits() -> None:
    model = colour_model("pixelcnn", 10)
    images = noise(2, seed=9)
    best = compress_with_stats(model, images)[1]
    for y in (0, 9):
        data, bits = compress_with_stats(model, images, labels=y)
        assert best <= bits + 1e-6
        assert torch.equal(decompress(model, data), images)


def test_grayscale_encoding_is_unchanged() -> None:
    """Grayscale models still write format 2 and read it back as (N, 1, H, W)."""
    model = random_model("gated", 10, size=SIZE, channels=8, layers=2, seed=4)
    images = noise(2, seed=1)[:, :1]
    data = compress(model, images)
    assert data[1] == 2 and unpack(data)[0].channels == 1
    assert decompress(model, data).shape == (2, 1, SIZE, SIZE)


def test_files_of_other_colours_are_refused_clearly() -> None:
    colour = colour_model("gated", 10)
    gray = random_model("gated", 10, size=SIZE, channels=8, layers=2, seed=4)
    gray_data = compress(gray, noise(1, seed=1)[:, :1])
    with pytest.raises(CodecError, match="grayscale images; this model codes colour"):
        decompress(colour, gray_data)
    colour_data = compress(colour, noise(1, seed=1))
    with pytest.raises(CodecError, match=r"colour .* images; this model codes grayscale"):
        decompress(gray, colour_data)
    with pytest.raises(CodecError, match="other weights"):
        decompress(colour_model("gated", 10, seed=5), colour_data)
    with pytest.raises(CodecError, match=r"\(N, 3, 8, 8\)|\(B, 3, 8, 8\)"):
        compress(colour, noise(1, seed=1)[:, :1])  # grayscale images to a colour model


def test_damage_to_a_colour_file_is_detected() -> None:
    model = random_model("gated", 10, size=4, levels=16, channels=8, layers=2, seed=4, image_channels=3)
    data = compress(model, noise(1, seed=2, size=4))
    assert len(data) > HEADER_BYTES + 16
    for pos in range(len(data)):
        for mask in (1 << (pos % 8), 0xFF):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            with pytest.raises(CodecError):
                decompress(model, bytes(damaged))
    for length in range(len(data)):
        with pytest.raises(CodecError):
            decompress(model, data[:length])


def test_cli_round_trip_of_a_colour_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = colour_model("gated", 10, levels=256, seed=3)
    weights = tmp_path / "colour.safetensors"
    save(model, weights)
    rgb = noise(1, 256, seed=11)[0].permute(1, 2, 0).numpy()  # (H, W, 3)
    png, packed, back = tmp_path / "in.png", tmp_path / "in.pxc", tmp_path / "out.png"
    Image.fromarray(rgb).save(png)
    assert main(["compress", str(png), str(packed), "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    dims = SIZE * SIZE * 3
    assert f"{8 * packed.stat().st_size / dims:.3f} bits/dim" in out
    assert "the classifier" in out  # the Fashion-MNIST classifier cannot label colour images
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    assert packed.read_bytes() == compress(model, x)  # the fewest-bits labels
    assert main(["decompress", str(packed), str(back), "--weights", str(weights)]) == 0
    with Image.open(back) as decoded:
        assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), rgb)

    gray_weights = tmp_path / "gray.safetensors"
    save(random_model("gated", 10, size=SIZE, levels=256, channels=8, layers=2, seed=3), gray_weights)
    assert main(["decompress", str(packed), str(back), "--weights", str(gray_weights)]) == 1
    assert "this model codes grayscale" in capsys.readouterr().err


def png_bytes(rgb: np.ndarray, **options: bool) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", **options)
    return out.getvalue()


def test_the_service_compresses_and_decompresses_colour_images(tmp_path: Path) -> None:
    model = colour_model("gated", 10, levels=256, seed=8)
    weights = tmp_path / "colour.safetensors"
    save(model, weights)
    images = noise(3, 256, seed=12)
    rgb = [image.permute(1, 2, 0).numpy() for image in images]
    octet = {"content-type": "application/octet-stream"}
    app = create_app(Settings(weights=weights, max_batch_delay_ms=2))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        one = client.post("/compress", files={"image": ("x.png", png_bytes(rgb[0]), "image/png")})
        assert one.status_code == 200, one.text
        assert float(one.headers["x-bits-per-dim"]) == pytest.approx(
            8 * len(one.content) / (SIZE**2 * 3), abs=1e-3
        )
        assert one.content == compress(model, images[:1])  # the classifier does not fit: fewest bits
        back = client.post("/decompress", content=one.content, headers=octet)
        assert back.status_code == 200, back.text
        with Image.open(io.BytesIO(back.content)) as decoded:
            assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), rgb[0])

        files = [("image", (f"{k}.png", png_bytes(im), "image/png")) for k, im in enumerate(rgb)]
        many = client.post("/compress", files=files)
        assert many.status_code == 200 and many.headers["x-images"] == "3"
        assert float(many.headers["x-bits-per-dim"]) == pytest.approx(
            8 * len(many.content) / (3 * SIZE**2 * 3), abs=1e-3
        )
        assert torch.equal(decompress(model, many.content), images)  # in upload order
        grid = client.post("/decompress", files={"data": ("d.bin", many.content, "application/octet-stream")})
        assert grid.status_code == 200 and grid.headers["x-images"] == "3"
        assert Image.open(io.BytesIO(grid.content)).mode == "RGB"

        gray = random_model("gated", 10, size=SIZE, levels=256, channels=8, layers=2, seed=8)
        r = client.post("/decompress", content=compress(gray, images[:1, :1]), headers=octet)
        assert r.status_code == 400 and "grayscale" in r.json()["detail"], r.text


def test_the_benchmark_codes_colour_images_against_png_webp_and_xz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = colour_model("gated", 2, levels=256, seed=9)
    weights = tmp_path / "colour.safetensors"
    save(model, weights)
    images = noise(8, 256, seed=13)
    rgb = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)
    for k, array in enumerate(rgb):
        folder = tmp_path / "data" / ("test" if k < 4 else "train") / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{k}.png")
    args = ["--weights", str(weights), "--data", str(tmp_path / "data"), "--limit", "4", "--sizes", "1,4"]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    dims = SIZE * SIZE * 3
    assert summary["colours"] == 3 and summary["dims_per_image"] == dims and "8x8 RGB" in out
    assert summary["exact"] == {"1": 4, "4": 4}
    for name, size in summary["bytes_per_image"].items():
        if size is not None:
            assert summary["bits_per_dim"][name] == pytest.approx(8 * size / dims, abs=1e-3), name
    test_images = (
        open_source(tmp_path / "data", SIZE, colours=3).part("test").images
    )  # as the bench read them
    assert sorted(test_images.flatten(1).tolist()) == sorted(images[:4].flatten(1).tolist())
    test_rgb = test_images.permute(0, 2, 3, 1).contiguous().numpy()
    png = sum(len(png_bytes(array, optimize=True)) for array in test_rgb) / 4
    assert summary["bytes_per_image"]["PNG (Pillow, optimize)"] == pytest.approx(png, abs=0.01)
    xz = len(lzma.compress(test_rgb.tobytes(), preset=9 | lzma.PRESET_EXTREME)) / 4
    assert summary["bytes_per_image"]["xz -9e, whole raw set"] == pytest.approx(xz, abs=0.01)
    assert summary["bytes_per_image"]["WebP lossless (method 6)"] is not None
