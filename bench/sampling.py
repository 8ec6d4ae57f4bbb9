"""``python -m bench.sampling``: how fast the cached sampler is, against a forward pass and naive.

For each batch size: the median time of one full forward pass, of the fast cached sampler
(a whole image), and of the naive sampler's per-pixel step (one full forward pass plus the
draw) over a few pixels, extrapolated to all H*W pixels (said so in the output). Prints the
ratios fast/forward and naive/fast. Asserts nothing about time. ``--profile`` prints where
the fast sampler's time goes in its torch step (torch profiler, by operator, at
``--profile-batch``; the compiled row loop that gated networks run instead is switched off for
it, as the profiler cannot see into it) and how many torch ops a pixel step runs. ``--compile`` measures what
``torch.compile`` buys: the per-pixel step compiled (inductor, dynamic shapes) against eager,
at batch 16, with the compile time and whether the images stay the same.

``--compare N`` counts how many of N images (seeds 0..N-1) the compiled row loop and the torch
step draw identically.

``--random CONFIG_JSON`` (fields of ``PixelCNNConfig``) or ``--image-channels 3`` measures a
model of random weights instead of a weights file (a colour model takes a step per colour);
``--naive-whole`` times whole images of the naive sampler instead of extrapolating, e.g.

    python -m bench.sampling --image-channels 3 --random '{"arch": "gated", "channels": 96,
        "layers": 8, "head_channels": 128, "image_size": 16}' --batch-sizes 1,8 --threads 1 --naive-whole
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch

from model.checkpoint import DEFAULT_WEIGHTS, load
from model.inference import cached
from model.inference.cached import cached_sample
from model.inference.caches import incremental
from model.inference.sampling import check_labels, draw, naive_sample, per_image_noise
from model.network.pixelcnn import PixelCNN, PixelCNNConfig


def median_seconds(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(
    model: PixelCNN, batch: int, repeats: int, naive_pixels: int, naive_whole: bool = False
) -> tuple[float, float, float]:
    """Median seconds of (one forward pass, one fast sampling run, naive extrapolated, or naive
    whole images with ``naive_whole``)."""
    size, colours = model.config.image_size, model.config.image_channels
    steps = size * size * colours  # the naive sampler's forward passes: one per pixel and colour
    seeds = list(range(batch))
    labels = check_labels(model, None, batch, seeds)
    noise = per_image_noise(seeds, steps)
    x = torch.randint(0, model.config.levels, (batch, colours, size, size))

    def forward() -> None:
        with torch.no_grad():
            model(x, labels)

    def naive_steps() -> None:
        # The naive sampler's loop body: a full forward pass, then one value drawn.
        with torch.no_grad():
            for d in range(naive_pixels):
                t, k = divmod(d, colours)
                i, j = divmod(t, size)
                logits = model(x, labels)
                at = logits[:, :, i, j] if colours == 1 else logits[:, :, k, i, j]
                x[:, k, i, j] = draw(at, noise[:, d], 1.0)

    forward_s = median_seconds(forward, repeats)
    fast_s = median_seconds(lambda: cached_sample(model, noise, labels, 1.0), repeats)
    if naive_whole:  # a whole image is hundreds of forward passes: its own warm-up
        naive_s = median_seconds(lambda: naive_sample(model, noise, labels, 1.0), repeats, warm_up=False)
    else:
        naive_s = median_seconds(naive_steps, repeats) / naive_pixels * steps
    return forward_s, fast_s, naive_s


def random_model(config_json: str | None, image_channels: int | None) -> PixelCNN:
    """A model of random weights (seed 0, PyTorch's initialisation) for ``config_json``."""
    config = PixelCNNConfig.from_json(config_json or "{}")
    if image_channels is not None:
        config = dataclasses.replace(config, image_channels=image_channels)
    torch.manual_seed(0)
    return PixelCNN(config).eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.sampling", description=__doc__)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--batch-sizes", default="1,16,64")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    p.add_argument("--naive-pixels", type=int, default=8, help="naive steps timed, then extrapolated")
    p.add_argument("--naive-whole", action="store_true", help="time whole naive images, not extrapolated")
    p.add_argument("--random", metavar="CONFIG_JSON", help="random weights for this config, not --weights")
    p.add_argument("--image-channels", type=int, help="random weights with this image_channels (3: colour)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="profile one fast sampling run")
    p.add_argument("--profile-batch", type=int, default=16, help="with --profile: its batch size")
    p.add_argument("--compile", action="store_true", help="time the per-pixel step under torch.compile")
    p.add_argument(
        "--compare",
        type=int,
        metavar="N",
        help="count images the compiled loop and the torch step draw alike",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    randomised = args.random is not None or args.image_channels is not None
    try:
        model = random_model(args.random, args.image_channels) if randomised else load(args.weights)
    except ValueError as exc:  # a bad config
        p.error(str(exc))
    size = model.config.image_size
    steps = size * size * model.config.image_channels
    source = f"random weights {model.config.to_json()}" if randomised else f"weights {args.weights}"
    print(
        f"{source}: {model.config.arch}, {model.parameter_count():,} parameters, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    naive_head = "naive s" if args.naive_whole else "naive s (extrap.)"
    print(
        f"{'batch':>5} {'forward s':>10} {'fast s':>8} {naive_head:>18} {'fast/fwd':>9} "
        f"{'naive/fast':>10} {'fast img/s':>10}"
    )
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        forward_s, fast_s, naive_s = measure(model, batch, args.repeats, args.naive_pixels, args.naive_whole)
        print(
            f"{batch:>5} {forward_s:>10.3f} {fast_s:>8.2f} {naive_s:>18.1f} {fast_s / forward_s:>9.2f} "
            f"{naive_s / fast_s:>10.1f} {batch / fast_s:>10.1f}"
        )
    if args.naive_whole:
        print(f"naive, fast and forward: medians of {args.repeats} full runs")
    else:
        print(
            f"naive: {args.naive_pixels} per-step forward passes timed (median of {args.repeats}) and "
            f"multiplied by {steps}; fast and forward: medians of {args.repeats} full runs"
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        seeds = list(range(args.profile_batch))
        labels = check_labels(model, None, len(seeds), seeds)
        noise = per_image_noise(seeds, steps)
        with mock.patch.object(cached, "supports", lambda model: False):  # the torch step
            cached_sample(model, noise, labels, 1.0)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                cached_sample(model, noise, labels, 1.0)
        top_level = sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::"))
        print(f"batch {len(seeds)}: {top_level / steps:.1f} top-level torch ops per pixel step")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if args.compile:
        compile_experiment(model, 16, args.repeats)
    if args.compare:
        compare_paths(model, args.compare)
    return 0


def compare_paths(model: PixelCNN, n: int) -> None:
    """Print how many of ``n`` images (seeds 0..n-1) the compiled row loop and the torch step
    draw identically, and how far apart their bits are."""
    seeds = list(range(n))
    labels = check_labels(model, None, n, seeds)
    noise = per_image_noise(seeds, model.config.image_size**2 * model.config.image_channels)
    compiled, compiled_bits = cached_sample(model, noise, labels, 1.0)
    with mock.patch.object(cached, "supports", lambda model: False):
        stepped, stepped_bits = cached_sample(model, noise, labels, 1.0)
    same = [torch.equal(a, b) for a, b in zip(compiled, stepped, strict=True)]
    gap = max(
        (abs(float(a - b)) for a, b, s in zip(compiled_bits, stepped_bits, same, strict=True) if s),
        default=0.0,
    )
    print(
        f"seeds 0..{n - 1}: {sum(same)} of {n} images identical from the compiled loop and the torch "
        f"step; bits of those within {gap:.1e}"
    )


def compile_experiment(model: PixelCNN, batch: int, repeats: int) -> None:
    """Print the fast sampler's time with its torch per-pixel step eager and compiled (the
    compiled row loop switched off, so that both run the torch step)."""
    size = model.config.image_size
    seeds = list(range(batch))
    labels = check_labels(model, None, batch, seeds)
    noise = per_image_noise(seeds, size * size * model.config.image_channels)
    cache_type = type(incremental(model, labels, batch))
    compiled_logits = torch.compile(cache_type.logits, dynamic=True)

    def sample_compiled() -> torch.Tensor:
        # cached_sample itself, with the cache's per-pixel step swapped for the compiled one.
        with mock.patch.object(cache_type, "logits", compiled_logits):
            return cached_sample(model, noise, labels, 1.0)[0]

    with mock.patch.object(cached, "supports", lambda model: False):
        started = time.perf_counter()
        first = sample_compiled()  # compiles (and maybe recompiles once for dynamic i, j)
        compile_s = time.perf_counter() - started
        eager_s = median_seconds(lambda: cached_sample(model, noise, labels, 1.0), repeats)
        compiled_s = median_seconds(sample_compiled, repeats)
        same = torch.equal(first, cached_sample(model, noise, labels, 1.0)[0])
    print(
        f"torch.compile of the per-pixel torch step, batch {batch}: eager {eager_s:.2f} s, compiled "
        f"{compiled_s:.2f} s ({eager_s / compiled_s:.2f}x), first run with compilation {compile_s:.1f} s, "
        f"images {'identical' if same else 'DIFFERENT'} to eager"
    )


if __name__ == "__main__":
    raise SystemExit(main())
