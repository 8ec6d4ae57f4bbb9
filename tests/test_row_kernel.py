"""The compiled row loops' building blocks: exact sums in a fixed order, and the same bits
from a fresh compilation as from numba's cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from numba import njit

from model.inference import cached, kernels, vertical_kernel
from model.inference.caches import incremental
from model.inference.generation import generate
from model.inference.incremental import IncrementalModel
from model.inference.particles import Particles
from model.inference.row_kernel import RowKernel
from model.inference.vector_ops import affine_rows, exp32, exp64, gate, total
from tests.conftest import random_model


@njit(cache=False)
def _each(function: Any, values: np.ndarray) -> np.ndarray:
    """``function`` (a compiled scalar function) of every value, in a compiled loop."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = function(values[i])
    return out


def test_the_register_tiles_and_the_plain_loop_give_the_same_sums() -> None:
    """64 outputs go through the tiles, 65 through the plain loop: the first 64 agree bit for
    bit, and both agree with float64 to float32 rounding; rows past a tile of 4 too."""
    rng = np.random.default_rng(0)
    rows, inputs = 7, 75
    x = rng.standard_normal((rows, inputs + 5)).astype(np.float32)
    weight = rng.standard_normal((inputs, 65)).astype(np.float32)
    start = rng.standard_normal((rows, 65)).astype(np.float32)
    tiled = np.zeros((rows, 64), np.float32)
    plain = np.zeros((rows, 65), np.float32)
    affine_rows(
        x, 5, inputs, np.ascontiguousarray(weight[:, :64]), np.ascontiguousarray(start[:, :64]), tiled, 64
    )
    affine_rows(x, 5, inputs, weight, start, plain, 65)
    assert np.array_equal(tiled, plain[:, :64])
    exact = start.astype(np.float64) + x[:, 5:].astype(np.float64) @ weight
    np.testing.assert_allclose(plain, exact, rtol=0, atol=5e-5)
    in_place = start.copy()
    affine_rows(x, 5, inputs, weight, in_place, in_place, 65)  # start may be out
    assert np.array_equal(in_place, plain)


def test_a_row_sums_the_same_whatever_rows_it_is_summed_with() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 40)).astype(np.float32)
    weight = rng.standard_normal((40, 96)).astype(np.float32)
    start = np.zeros((9, 96), np.float32)
    together = np.empty((9, 96), np.float32)
    affine_rows(x, 0, 40, weight, start, together, 96)
    for row in range(9):
        alone = np.empty((1, 96), np.float32)
        affine_rows(x[row : row + 1], 0, 40, weight, start[:1], alone, 96)
        assert np.array_equal(alone[0], together[row])


def test_the_exponentials_gates_and_sums_are_accurate() -> None:
    values = np.linspace(-80, 88, 20001, dtype=np.float32)
    relative = _each(exp32, values) / np.exp(values.astype(np.float64)) - 1
    assert np.abs(relative).max() < 2.5e-7
    low = _each(exp32, np.array([-100.0, -1e30], np.float32))
    assert (low >= np.finfo(np.float32).tiny).all()  # clamped: never subnormal
    doubles = np.linspace(-700, 700, 20001)
    assert np.abs(_each(exp64, doubles) / np.exp(doubles) - 1).max() < 1e-15
    pre = np.random.default_rng(2).standard_normal((5, 64)).astype(np.float32) * 6
    gated = np.empty((5, 32), np.float32)
    gate(pre, gated)
    a, g = pre[:, :32].astype(np.float64), pre[:, 32:].astype(np.float64)
    np.testing.assert_allclose(gated, np.tanh(a) / (1 + np.exp(-g)), rtol=0, atol=5e-7)
    row = np.random.default_rng(3).random(101).astype(np.float32)
    assert abs(float(total(row, 101)) - row.astype(np.float64).sum()) < 1e-4
    assert float(total(row, 3)) == float(row[0] + row[1] + row[2])


def test_a_fresh_compilation_gives_the_same_bits_as_the_cached_one() -> None:
    """The row loop compiled here, anew and uncached, draws row 0 and 1 of a small
    gated-attention network exactly as the cached one does: the same hidden rows, keys and
    log-likelihoods to the last bit (the compiler is given no choice over rounding)."""
    model = random_model("gated-attention", 10, seed=3, channels=32, layers=3)
    fresh = njit(nogil=True)(kernels.sample_row.py_func)
    results = []
    for sample_row in (kernels.sample_row, fresh):
        noise = torch.rand(2, 100, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        kernel = RowKernel(model, torch.tensor([1, 7]), noise, 1.0)
        for i in range(2):
            vertical, horizontal = kernel.arguments((0, 2))
            vertical_kernel.vertical_row(i, *vertical)
            sample_row(i, *horizontal)
        results.append((kernel.rows.copy(), kernel.keys.copy(), kernel.nats.copy(), kernel.drawn.copy()))
    for from_cache, anew in zip(*results, strict=True):
        assert np.array_equal(from_cache, anew)


def test_the_laid_out_weights_follow_an_update_of_the_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loops' weights are kept per network; an in-place update (a training step,
    ``load_state_dict``) lays them out again, so the loops draw what the torch step draws."""
    model = random_model("gated-attention", 10, seed=9, layers=2)
    before = generate(model, 3, seeds=[1, 2, 3])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.3)
    after = generate(model, 3, seeds=[1, 2, 3])
    monkeypatch.setattr(cached, "supports", lambda model: False)
    assert torch.equal(after, generate(model, 3, seeds=[1, 2, 3]))
    assert not torch.equal(before, after)


def _teacher_forced(
    state: IncrementalModel | RowKernel, images: torch.Tensor, trials: bool, resample: dict[int, list[int]]
) -> torch.Tensor:
    """Every pixel's logits ``(H*W, B, levels)`` for known ``images`` ``(B, H, W)``, driven as
    particles drive a state: with ``trials``, a trial value written at each pixel and the next
    pixel's logits looked at before the real value; at position t in ``resample``, rows moved."""
    size = images.shape[1]
    out = []
    for i in range(size):
        state.begin_row(i)
        for j in range(size):
            out.append(state.logits(i, j).clone())
            if trials and j < size - 1:
                state.write(i, j, (images[:, i, j] + 5) % 16)
                state.logits(i, j + 1)
            state.write(i, j, images[:, i, j])
            if i * size + j in resample:
                index = torch.tensor(resample[i * size + j])
                state.select(index)
                images = images[index]
    return torch.stack(out)


@torch.no_grad()
def test_the_loops_a_pixel_at_a_time_step_as_the_cache_does() -> None:
    """``RowKernel.steps`` behind the caches' step interface, as completion and super-resolution
    drive it: trial values looked ahead from, rows resampled (labels travel with them). Its
    logits agree with the torch cache's to float32 rounding, and trials leave no trace: the
    same bits as a walk without them."""
    model = random_model("gated-attention", 10, seed=5, channels=32, layers=3)
    images = torch.randint(0, 16, (4, 10, 10), generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 3, 3, 9])
    resample = {17: [1, 1, 0, 3], 58: [3, 2, 2, 0], 71: [0, 1, 2, 3]}
    reference = _teacher_forced(incremental(model, labels, 4), images, False, resample)
    looked_ahead = _teacher_forced(RowKernel.steps(model, labels, 4), images, True, resample)
    plain = _teacher_forced(RowKernel.steps(model, labels, 4), images, False, resample)
    assert torch.equal(looked_ahead, plain)
    scale = float(reference.abs().max())
    torch.testing.assert_close(looked_ahead, reference, rtol=0, atol=1e-5 * scale)


def test_particles_run_the_compiled_loops_where_they_run_the_network() -> None:
    for arch, compiled in (("gated-attention", True), ("gated", True), ("pixelcnn", False)):
        group = Particles(random_model(arch, 10, seed=1), 2, [1, 2], 3)
        assert isinstance(group.state, RowKernel) is compiled, arch
