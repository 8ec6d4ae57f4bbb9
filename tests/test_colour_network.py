"""Colour models (``image_channels=3``): the channel masks of the original PixelCNN paper.

The logits of colour c at pixel p must move with exactly these inputs: every colour of every
pixel before p in raster order, and the colours before c of p itself (red sees none of p, green
sees p's red, blue p's red and green). Checked by changing one input value at a time.
"""

from __future__ import annotations

import math

import pytest
import torch

from model.checkpoint import load, save
from model.inference.generation import generate
from model.inference.likelihood import bits_per_dim_loss, log_likelihood
from model.inference.sampling import draw, per_image_noise
from model.network.pixelcnn import ARCHITECTURES, PixelCNNConfig
from tests.conftest import SHIPPED_WEIGHTS, random_model

SIZE, COLOURS, LEVELS = 5, 3, 16


def dependencies(arch: str) -> torch.Tensor:
    """``(K, N, K, N)`` bool: whether the logits of colour c at pixel p (first two axes) move
    when input colour c' at pixel q (last two) changes. N = SIZE * SIZE, raster order."""
    model = random_model(arch, 10, size=SIZE, levels=LEVELS, channels=24, layers=3, image_channels=COLOURS)
    n = SIZE * SIZE
    moved = torch.zeros(COLOURS * n, COLOURS, SIZE, SIZE, dtype=torch.bool)
    # A ReLU can hide a path for one image and one label (a unit dead for that class), so
    # several random images, each with its own label, show every path that exists.
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        base = torch.randint(0, LEVELS, (1, COLOURS, SIZE, SIZE), generator=generator)
        label = int(torch.randint(0, 10, (1,), generator=generator))
        changed = base.repeat(COLOURS * n, 1, 1, 1)
        flat = changed.view(COLOURS * n, COLOURS * n)  # row i changes input i = c' * N + q
        index = torch.arange(COLOURS * n)
        flat[index, index] = (flat[index, index] + LEVELS // 2) % LEVELS
        labels = torch.full((len(changed) + 1,), label)
        with torch.no_grad():
            logits = model(torch.cat([base, changed]), labels)  # (1 + K*N, L, K, H, W)
        moved |= (logits[1:] - logits[:1]).abs().amax(1) > 1e-6  # (K*N inputs, K, H, W)
    return moved.view(COLOURS, n, COLOURS, n).permute(2, 3, 0, 1)


def allowed() -> torch.Tensor:
    n = SIZE * SIZE
    p = torch.arange(n)[None, :, None, None]
    q = torch.arange(n)[None, None, None, :]
    c = torch.arange(COLOURS)[:, None, None, None]
    c_in = torch.arange(COLOURS)[None, None, :, None]
    return (q < p) | ((q == p) & (c_in < c))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_colour_sees_exactly_the_earlier_pixels_and_its_pixels_earlier_colours(arch: str) -> None:
    moved = dependencies(arch)
    expected = allowed()
    assert not bool((moved & ~expected).any()), f"{arch}: a logit sees an input it must not"
    if arch != "pixelcnn":  # the classic network has its blind spot above and to the right
        assert bool(moved[expected].all()), f"{arch}: some allowed input never reaches the logits"
    else:
        # Its blind spot aside, the pixel's own earlier colours and the pixel to the left reach it.
        for p in (6, 12, 18):
            for c in range(COLOURS):
                assert bool(moved[c, p, :c, p].all()) and bool(moved[c, p, :, p - 1].all())


def test_the_loss_sums_the_colours_and_counts_every_dim() -> None:
    model = random_model(
        "gated", None, size=SIZE, levels=LEVELS, channels=12, layers=2, image_channels=COLOURS
    )
    x = torch.randint(0, LEVELS, (2, COLOURS, SIZE, SIZE))
    logits = model(x)
    assert logits.shape == (2, LEVELS, COLOURS, SIZE, SIZE)
    log_probs = torch.log_softmax(logits, dim=1).gather(1, x.unsqueeze(1)).squeeze(1)
    expected = -log_probs.mean() / torch.log(torch.tensor(2.0))
    assert torch.allclose(bits_per_dim_loss(logits, x), expected, atol=1e-5)


def test_a_colour_model_round_trips_through_a_weights_file_and_grayscale_headers_stay(tmp_path) -> None:
    model = random_model(
        "gated-attention", 10, size=SIZE, levels=LEVELS, channels=12, layers=2, image_channels=3
    )
    save(model, tmp_path / "colour.safetensors")
    back = load(tmp_path / "colour.safetensors")
    assert back.config.image_channels == 3
    x = torch.randint(0, LEVELS, (1, 3, SIZE, SIZE))
    y = torch.tensor([2])
    assert torch.equal(back(x, y), model(x, y))
    assert '"image_channels"' not in load(SHIPPED_WEIGHTS).config.to_json()
    with pytest.raises(ValueError, match="must have shape \\(B, 3, H, W\\)"):
        back(torch.zeros(1, 1, SIZE, SIZE, dtype=torch.long), y)
    with pytest.raises(ValueError, match="image_channels must be 1"):
        PixelCNNConfig(image_channels=2)


def test_colour_images_are_sampled_colour_by_colour_from_the_models_own_distributions() -> None:
    model = random_model(
        "gated-attention", 10, size=4, levels=LEVELS, channels=12, layers=2, image_channels=3
    )
    images = generate(model, 3, labels=[1, 2, 3], seeds=[5, 6, 7])
    assert images.shape == (3, 3, 4, 4) and images.dtype == torch.uint8
    assert torch.equal(images, generate(model, 3, labels=[1, 2, 3], seeds=[5, 6, 7]))
    # Each value is the draw of its own seed's uniform from the logits given what came before.
    noise = per_image_noise([5, 6, 7], 3 * 16)
    logits = model(images.long(), torch.tensor([1, 2, 3]))
    for t in (0, 5, 15):
        i, j = divmod(t, 4)
        for k in range(3):
            drawn = draw(logits[:, :, k, i, j], noise[:, 3 * t + k], 1.0)
            assert torch.equal(drawn, images[:, k, i, j].long())


def test_colour_likelihood_counts_three_dims_a_pixel_and_sums_labels_out_exactly() -> None:
    model = random_model("gated", 3, size=4, levels=LEVELS, channels=12, layers=2, image_channels=3)
    images = torch.randint(0, LEVELS, (2, 3, 4, 4))
    given = log_likelihood(model, images, torch.tensor([0, 0]))
    assert given.log2_probs.shape == (2, 3, 4, 4)
    assert torch.allclose(given.bits_per_dim, given.total_bits / 48)
    marginal = log_likelihood(model, images)
    per_label = torch.stack(
        [log_likelihood(model, images, torch.tensor([y, y])).total_bits for y in range(3)]
    )
    expected = -(torch.logsumexp(-per_label.double() * math.log(2), 0) - math.log(3)) / math.log(2)
    assert torch.allclose(marginal.total_bits.double(), expected, atol=1e-3)
    assert torch.allclose(marginal.log2_probs.flatten(1).sum(1), -marginal.total_bits, atol=1e-3)
