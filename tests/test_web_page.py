"""The web page, driven in Debian's headless Chromium by Playwright against a real server."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from playwright.sync_api import Browser, Route

from app.main import create_app
from app.settings import Settings
from model import FASHION_CLASSES
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model
from tests.server import running_server


def named(model: PixelCNN, class_names: tuple[str, ...]) -> PixelCNN:
    """The same network and weights, with these class names in its config."""
    renamed = PixelCNN(replace(model.config, class_names=class_names)).eval()
    renamed.load_state_dict(model.state_dict())
    return renamed


def test_generate_complete_and_score_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    model = named(
        random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=4), FASHION_CLASSES
    )
    app = create_app(Settings(max_batch_delay_ms=5), models={"model": model})
    with running_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_function(
            "() => document.querySelector('#model-info').textContent.includes('parameters')"
        )
        assert page.locator("#gen-label option").count() == 11

        page.select_option("#gen-n", "4")
        page.select_option("#gen-label", "7")
        page.fill("#gen-seed", "3")
        page.click("#generate-button")
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#gen-results figure").count() == 4
        assert "sneaker #3" in (page.locator("#gen-results figcaption").first.text_content() or "")

        page.locator("#gen-results img").first.click()  # load it into the editor
        page.click("#mask-top")
        page.select_option("#cmp-n", "4")
        page.select_option("#cmp-particles", "4")
        page.click("#complete-button")
        page.wait_for_selector("#cmp-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#cmp-results figure").count() == 4
        assert "bits/dim" in (page.locator("#cmp-results figcaption").first.text_content() or "")

        page.click("#score-button")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=60_000)
        page.wait_for_function("() => document.querySelector('#heatmap').naturalWidth > 100")
        assert "bits/dim" in (page.locator("#score-status").text_content() or "")
        assert page.locator("#posterior li").count() == 4

        # An error from the server is shown, not swallowed.
        page.fill("#gen-seed", str(2**32 - 1))  # seed + n - 1 must stay below 2**32
        page.click("#generate-button")
        page.wait_for_function("() => document.querySelector('#gen-status').classList.contains('error')")
        assert "seed" in (page.locator("#gen-status").text_content() or "")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        shutil.copy(tmp_path / "page.png", "/tmp/page.png")
        assert not errors, errors


def test_the_api_docs_work_offline_with_every_asset_from_the_service(browser: Browser) -> None:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=4)
    app = create_app(Settings(), models={"model": model})
    with running_server(app) as url:
        context = browser.new_context()
        elsewhere: list[str] = []

        def only_the_service(route: Route) -> None:
            # The network is blocked: a request to any other host fails, and is recorded.
            if route.request.url.startswith(url + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_service)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        docs = page.goto(url + "/docs")
        assert docs is not None and "default-src 'self'" in docs.headers["content-security-policy"]
        page.wait_for_selector(".opblock-summary-path", timeout=60_000)
        paths = {text.strip() for text in page.locator(".opblock-summary-path").all_text_contents()}
        assert {"/generate", "/complete", "/likelihood", "/compress", "/decompress", "/model"} <= paths
        assets = "[...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)"
        docs_assets = page.evaluate(assets)

        page.goto(url + "/redoc")
        page.wait_for_selector("text=/generate", timeout=60_000)
        redoc_assets = page.evaluate(assets)
        context.close()
    assert docs_assets and redoc_assets
    for asset in docs_assets + redoc_assets:
        assert asset.startswith(url + "/"), asset
    assert not elsewhere, elsewhere
    assert not errors, errors
