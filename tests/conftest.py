"""Shared fixtures: small seeded models, one briefly trained on real Fashion-MNIST, and
Debian's headless Chromium for the web page's tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Browser, sync_playwright

from model.checkpoint import load
from model.data import FASHION_CLASSES
from model.inference.cached import warm_up
from model.network.pixelcnn import PixelCNN, PixelCNNConfig
from model.training import Trainer, TrainSettings
from tests.databases import postgres_url  # noqa: F401 (the PostgreSQL fixture, for any module)

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "pixelcnn-gated-fmnist.safetensors"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not try the network: this machine has none, and each attempt is refused.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the sampler's loops once, first (or load them from numba's cache): on a clean
    checkout that takes about a minute, which no test's own deadline (a server's start) should
    pay."""
    warm_up()


@pytest.fixture(scope="session", autouse=True)
def throwaway_job_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The apps tests build keep durable jobs in a database of this session, not in state/."""
    folder = tmp_path_factory.mktemp("jobs")
    before = os.environ.get("PIXELCNN_JOB_STORE")
    os.environ["PIXELCNN_JOB_STORE"] = f"sqlite:///{folder}/jobs.sqlite3"
    yield
    if before is None:
        os.environ.pop("PIXELCNN_JOB_STORE", None)
    else:
        os.environ["PIXELCNN_JOB_STORE"] = before


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def random_model(
    arch: str,
    num_classes: int | None = 10,
    *,
    size: int = 10,
    levels: int = 16,
    channels: int = 16,
    layers: int = 3,
    seed: int = 0,
    attention_every: int = 1,
    class_names: tuple[str, ...] | None = None,
    image_channels: int = 1,
) -> PixelCNN:
    """A small model with random weights, scaled up so that its outputs vary a lot.

    A gated-attention model gets an attention block after every ``attention_every`` layers. A
    10-class model stands in for a Fashion-MNIST one: its labels have Fashion-MNIST's names
    unless ``class_names`` says otherwise.
    """
    if class_names is None and num_classes == len(FASHION_CLASSES):
        class_names = FASHION_CLASSES
    torch.manual_seed(seed)
    config = PixelCNNConfig(
        arch=arch,
        channels=channels,
        layers=layers,
        levels=levels,
        image_size=size,
        num_classes=num_classes,
        head_channels=16,
        attention_every=attention_every,
        class_names=class_names,
        image_channels=image_channels,
    )
    model = PixelCNN(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> PixelCNN:
    """A 16-channel conditional gated model after 300 steps on real Fashion-MNIST (~20 s)."""
    run_dir = tmp_path_factory.mktemp("trained")
    settings = TrainSettings(
        model=PixelCNNConfig(arch="gated", channels=16, layers=4, num_classes=10, head_channels=32),
        run_dir=str(run_dir),
        epochs=1,
        batch_size=32,
        lr=3e-3,
        warmup_steps=20,
        train_limit=9600,
        val_limit=500,
        max_steps=300,
        samples_per_epoch=False,
    )
    trainer = Trainer(settings)
    trainer.run(progress=False)
    trainer.ema.eval()
    return trainer.ema


@pytest.fixture(scope="session")
def shipped_model() -> PixelCNN:
    return load(SHIPPED_WEIGHTS)
