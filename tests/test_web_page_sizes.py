"""The web page follows /model: a model of another size, with its own class names or none, in
Debian's headless Chromium by Playwright against a real server."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import torch
from PIL import Image
from playwright.sync_api import Browser, Page

from app.main import create_app
from app.settings import Settings
from model import downscale
from model.network.pixelcnn import PixelCNN, PixelCNNConfig
from tests.server import running_server

CLASS_MENUS = ("#gen-label", "#cmp-label", "#up-label")
PROGRESS = ("#gen-progress", "#cmp-progress", "#up-progress")


def tiny_model(
    size: int, class_names: tuple[str, ...] | None, seed: int = 0, image_channels: int = 1
) -> PixelCNN:
    """A tiny random model of ``size`` x ``size`` images, with these classes (None: unconditional)."""
    torch.manual_seed(seed)
    config = PixelCNNConfig(
        arch="gated",
        channels=16,
        layers=2,
        levels=256,
        image_size=size,
        num_classes=len(class_names) if class_names else None,
        class_names=class_names,
        head_channels=16,
        image_channels=image_channels,
    )
    model = PixelCNN(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_function("() => document.querySelector('#model-info').textContent.includes('parameters')")
    return page, errors


def options(page: Page, selector: str) -> list[tuple[str, str]]:
    pairs = page.eval_on_selector(selector, "s => [...s.options].map(o => [o.value, o.textContent])")
    return [(value, text) for value, text in pairs]


def decoded(src: str, mode: str = "L") -> np.ndarray:
    """A data-URL image's pixels, in ``mode``."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert(mode))


def test_a_16x16_model_with_its_own_classes(browser: Browser) -> None:
    model = tiny_model(16, ("cat", "dog", "owl"), seed=3)
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"model": model})
    with running_server(app) as url:
        icon = httpx.get(url + "/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(icon.content)).size == (32, 32)
        assert "/favicon.ico" not in httpx.get(url + "/openapi.json").json()["paths"]

        page, errors = open_page(browser, url)
        assert page.get_attribute("link[rel=icon]", "href") == "/favicon.ico"
        assert "16×16" in (page.locator("#model-info").text_content() or "")
        assert "3 classes" in (page.locator("#model-info").text_content() or "")
        for menu in CLASS_MENUS:
            assert [name for _, name in options(page, menu)][1:] == ["cat", "dog", "owl"]
            assert page.locator(menu).is_visible() and page.locator(menu).is_enabled()
        assert options(page, "#up-factor") == [
            ("2", "2 (8x8)"),
            ("4", "4 (4x4)"),
            ("", "from the upload's size"),
        ]
        assert page.locator("#up-factor").input_value() == "4"
        hint = page.locator("#up-hint").text_content() or ""
        assert "8x8 or 4x4" in hint and "16x16" in hint and "28" not in hint and "14x14" not in hint
        for bar in PROGRESS:
            assert page.eval_on_selector(bar, "b => b.max") == 16
        width = page.eval_on_selector("#canvas", "c => c.width")
        assert width % 16 == 0 and width == page.eval_on_selector("#canvas", "c => c.height")
        # An empty editor says what to do.
        assert page.locator("#editor-hint").is_visible()
        assert "upload" in (page.locator("#editor-hint").text_content() or "")
        page.wait_for_function("() => document.querySelectorAll('#ed-picker canvas').length === 10")
        assert page.eval_on_selector("#ed-picker canvas", "c => c.width") == 16

        # Generate by class name: 16x16 images, the bar counting 16 rows.
        page.select_option("#gen-n", "1")
        page.select_option("#gen-label", label="owl")
        page.fill("#gen-seed", "5")
        page.click("#generate-button")
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#gen-results figcaption").first.text_content() == "owl #5"
        assert decoded(page.locator("#gen-results img").first.get_attribute("src") or "").shape == (16, 16)

        # A test image into the editor, its top half completed at 16x16.
        page.locator("#ed-picker canvas").nth(7).click()
        page.wait_for_function("() => state.image.some((v) => v > 0)")  # the editor's 16x16 pixels
        assert page.evaluate("state.image.length") == 16 * 16 * 3  # RGB triples
        page.click("#mask-top")
        page.select_option("#cmp-n", "1")
        page.select_option("#cmp-particles", "1")
        page.select_option("#cmp-label", label="dog")
        page.click("#complete-button")
        page.wait_for_selector("#cmp-results figure img:not(.partial)", timeout=60_000)
        assert decoded(page.locator("#cmp-results img").first.get_attribute("src") or "").shape == (16, 16)

        # Upscale a test image (shown at 16x16) by 4: a 4x4 small image, 16x16 samples that agree.
        page.wait_for_function("() => document.querySelectorAll('#up-picker canvas').length === 10")
        page.locator("#up-picker canvas").nth(1).click()
        page.select_option("#up-n", "1")
        page.select_option("#up-particles", "1")
        page.click("#upscale-button")
        page.wait_for_function(
            "() => document.querySelector('#up-status').textContent.includes('block means')", timeout=60_000
        )
        small, _, sample = (
            decoded(page.locator("#up-results img").nth(k).get_attribute("src") or "") for k in range(3)
        )
        assert small.shape == (4, 4) and sample.shape == (16, 16)
        assert np.array_equal(downscale(torch.from_numpy(sample.copy()), 4).numpy(), small)
        assert not errors, errors


def test_an_unconditional_model_that_cannot_upscale(browser: Browser) -> None:
    model = tiny_model(11, None, seed=1)  # 11 has no factor that leaves a small image to upscale
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"model": model})
    with running_server(app) as url:
        assert httpx.get(url + "/model").json()["upscale_factors"] == []
        page, errors = open_page(browser, url)
        assert "unconditional" in (page.locator("#model-info").text_content() or "")
        for menu in CLASS_MENUS:  # no label to choose
            assert not page.locator(menu).is_visible() and page.locator(menu).is_disabled()
        assert page.locator("#upscale-button").is_disabled()
        assert "Upscaling is off" in (page.locator("#up-hint").text_content() or "")
        assert not page.locator("#up-picker").is_visible()
        for bar in PROGRESS:
            assert page.eval_on_selector(bar, "b => b.max") == 11
        assert page.eval_on_selector("#canvas", "c => c.width") % 11 == 0

        page.select_option("#gen-n", "1")
        page.click("#generate-button")
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert decoded(page.locator("#gen-results img").first.get_attribute("src") or "").shape == (11, 11)
        page.click("#score-button")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=60_000)
        assert "bits/dim" in (page.locator("#score-status").text_content() or "")
        assert page.locator("#posterior li").count() == 0
        assert not errors, errors


def test_a_colour_model_draws_in_colour_and_keeps_the_pen_colour(browser: Browser) -> None:
    model = tiny_model(12, None, seed=2, image_channels=3)
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"model": model})
    with running_server(app) as url:
        page, errors = open_page(browser, url)
        assert "12×12 RGB" in (page.locator("#model-info").text_content() or "")
        assert page.locator("#pen-colour").is_visible()
        page.select_option("#gen-n", "1")
        page.click("#generate-button")
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        sample = decoded(page.locator("#gen-results img").first.get_attribute("src") or "", "RGB")
        assert sample.shape == (12, 12, 3)

        # Draw the whole bottom half red with the pen, then fill the top half.
        page.fill("#pen-colour", "#ff0000")
        page.check("input[name=tool][value=draw]")
        box = page.locator("#canvas").bounding_box()
        assert box is not None
        cell = box["width"] / 12
        for row in range(6, 12):
            for col in range(0, 12, 2):
                page.mouse.click(box["x"] + (col + 0.5) * cell, box["y"] + (row + 0.5) * cell)
        page.click("#mask-top")
        page.select_option("#cmp-n", "1")
        page.click("#complete-button")
        page.wait_for_selector("#cmp-results figure img:not(.partial)", timeout=60_000)
        filled = decoded(page.locator("#cmp-results img").first.get_attribute("src") or "", "RGB")
        assert filled.shape == (12, 12, 3)
        assert (filled[6:, :] == [255, 0, 0]).all()  # the known half comes back exactly, in red
        assert not errors, errors
