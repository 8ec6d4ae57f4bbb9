"""The web page's upscale panel, in Debian's headless Chromium by Playwright against a real server."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from playwright.sync_api import Browser, Page

from app.main import create_app
from app.settings import Settings
from model import downscale
from tests.conftest import random_model
from tests.server import running_server
from tests.test_streaming import RowGate
from tests.test_web_streaming import GREY_ROWS

STRIP = Path(__file__).resolve().parents[1] / "app" / "static" / "test-images.png"


def shown(page: Page, index: int) -> np.ndarray:
    """The pixels of the ``index``-th image of the panel's results."""
    src = page.locator("#up-results img").nth(index).get_attribute("src") or ""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))


def test_the_upscale_panel_shows_small_bicubic_samples_and_truth(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=4)
    app = create_app(Settings(max_batch_delay_ms=5), models={"model": model})
    strip = np.asarray(Image.open(STRIP))
    with running_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#up-picker canvas').length === 10")
        page.wait_for_function("() => document.querySelector('#up-label').options.length === 11")
        factors = page.eval_on_selector("#up-factor", "s => [...s.options].map(o => o.textContent)")
        assert factors == ["2 (14x14)", "4 (7x7)", "7 (4x4)", "from the upload's size"]
        assert "14x14, 7x7 or 4x4" in (page.locator("#up-hint").text_content() or "")

        page.locator("#up-picker canvas").nth(7).click()  # the sneaker
        page.select_option("#up-factor", "4")
        page.select_option("#up-n", "4")
        page.select_option("#up-particles", "4")
        held = RowGate(monkeypatch, at=12, sampler="upscale")  # waits after row 12 until we looked
        page.click("#upscale-button")
        # Streamed: partial rows (grey below) and a progress bar first, then the result.
        page.wait_for_function("() => document.querySelector('#up-progress').value === 12", timeout=120_000)
        assert page.locator("#up-results img.partial").count() == 4
        assert page.locator("#upscale-button").text_content() == "Cancel"
        page.wait_for_function("() => document.querySelector('#up-results img.partial').naturalWidth > 0")
        grey = page.locator("#up-results img.partial").first.evaluate(GREY_ROWS)
        assert grey == [False] * 12 + [True] * 16  # twelve rows drawn, the rest still grey
        held.go.set()
        page.wait_for_function(
            "() => document.querySelector('#up-status').textContent.includes('block means')", timeout=120_000
        )
        assert page.locator("#upscale-button").text_content() == "Upscale"
        captions = page.locator("#up-results figcaption").all_text_contents()
        assert captions[:2] == ["small", "bicubic"] and captions[-1] == "truth" and len(captions) == 7
        assert all("bits/dim" in c for c in captions[2:6])
        truth = strip[:, 7 * 28 : 8 * 28]
        small = downscale(torch.from_numpy(truth.copy()), 4)
        assert np.array_equal(shown(page, 0), small.numpy()) and np.array_equal(shown(page, 6), truth)
        assert shown(page, 1).shape == (28, 28)
        for k in range(2, 6):  # every sample agrees with the small image
            assert torch.equal(downscale(torch.from_numpy(shown(page, k).copy()), 4), small)
        assert "block means" in (page.locator("#up-status").text_content() or "")

        # An upload whose size gives the factor, and an error shown, not swallowed.
        upload = tmp_path / "small.png"
        Image.fromarray(np.full((4, 4), 200, np.uint8), mode="L").save(upload)
        page.set_input_files("#up-upload", str(upload))
        page.select_option("#up-factor", "")
        page.select_option("#up-n", "1")
        page.click("#upscale-button")
        page.wait_for_function(
            "() => document.querySelectorAll('#up-results figure').length === 3 && "
            "!document.querySelector('#up-results img.partial')"
        )
        assert torch.equal(
            downscale(torch.from_numpy(shown(page, 2).copy()), 7), torch.full((4, 4), 200, dtype=torch.uint8)
        )
        page.select_option("#up-factor", "2")  # 4x4 is smaller than the 14x14 factor 2 needs
        page.click("#upscale-button")
        page.wait_for_function("() => document.querySelector('#up-status').classList.contains('error')")
        assert "smaller than the 14x14" in (page.locator("#up-status").text_content() or "")
        page.screenshot(path=str(tmp_path / "upscale.png"), full_page=True)
        assert not errors, errors
