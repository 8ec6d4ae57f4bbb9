"""The web page with several models: a picker from /models, and the canvas, colour control and
class menus follow the chosen model, whose name every request carries (headless Chromium by
Playwright against a real server)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from urllib.parse import urlparse

import numpy as np
from PIL import Image
from playwright.sync_api import Browser, Page, Request, Response, Route

from app.main import create_app
from app.settings import Settings
from model import FASHION_CLASSES
from tests.conftest import random_model
from tests.server import running_server

CLASS_MENUS = ("#gen-label", "#cmp-label", "#up-label")
SHAPES = ("circle", "square", "star")
MODEL_ROUTES = {"/generate", "/complete", "/likelihood", "/upscale"}


def options(page: Page, selector: str) -> list[tuple[str, str]]:
    pairs = page.eval_on_selector(selector, "s => [...s.options].map(o => [o.value, o.textContent])")
    return [(value, text) for value, text in pairs]


def class_names(page: Page, menu: str) -> list[str]:
    return [name for _, name in options(page, menu)][1:]  # after "any", "infer" or "guess"


def decoded(src: str) -> np.ndarray:
    """A data-URL image's pixels, as RGB."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def named_model(request: Request) -> str | None:
    """The model a request of the page named: its JSON body's or its multipart form's field."""
    body = request.post_data_buffer or b""
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(body).get("model")
    marker = b'name="model"\r\n\r\n'
    if marker not in body:
        return None
    return body.split(marker, 1)[1].split(b"\r\n", 1)[0].decode()


def open_page(
    browser: Browser, url: str, models: Callable[[Route], None] | None = None
) -> tuple[Page, list[str], list[Request]]:
    """The page once it has its model (``models``: what answers its GET /models instead of the
    server); its script errors, and the requests of its model calls."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors: list[str] = []
    calls: list[Request] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Passed through a route, not just watched: only an intercepted request's multipart body
    # (its parts are blobs) is readable here.
    def record(route: Route) -> None:
        calls.append(route.request)
        route.continue_()

    page.route(lambda address: urlparse(address).path in MODEL_ROUTES, record)
    if models is not None:
        page.route(url + "/models", models)
    page.goto(url + "/")
    page.wait_for_function("() => document.querySelector('#model-info').textContent.includes('parameters')")
    return page, errors, calls


def answered_by(response: Response | None) -> str:
    """The model named by the response's X-Model tag: ``name@sha256-prefix``, or just the name for
    a model given in memory, which has no weights file to hash."""
    assert response is not None
    return response.headers["x-model"].split("@", 1)[0]


def is_generate(response: Response) -> bool:
    return urlparse(response.url).path == "/generate"


def test_the_picker_switches_size_colour_classes_and_the_model_each_request_names(
    browser: Browser,
) -> None:
    fashion = random_model("gated", 10, size=28, levels=16, channels=8, layers=2, seed=4)
    shapes = random_model(
        "gated", 3, size=12, levels=16, channels=8, layers=2, seed=5, class_names=SHAPES, image_channels=3
    )
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"a": fashion, "b": shapes})
    with running_server(app) as url:
        page, errors, calls = open_page(browser, url)

        # Both models listed by name, the default marked and chosen; the page is model a's.
        assert page.locator("#model").is_visible()
        assert (page.locator("label", has=page.locator("#model")).text_content() or "").startswith("Model")
        assert options(page, "#model") == [("a", "a (default)"), ("b", "b")]
        assert page.locator("#model").input_value() == "a"
        assert "28×28 grayscale" in (page.locator("#model-info").text_content() or "")
        assert page.eval_on_selector("#canvas", "c => c.width") == 280
        assert not page.locator("#pen-colour").is_visible()
        for menu in CLASS_MENUS:
            assert class_names(page, menu) == list(FASHION_CLASSES)

        # Model b: a 12x12 canvas, the colour control, b's classes, test images at 12x12.
        page.select_option("#model", "b")
        page.wait_for_function("() => state.size === 12")
        assert "12×12 RGB" in (page.locator("#model-info").text_content() or "")
        assert "3 classes" in (page.locator("#model-info").text_content() or "")
        assert page.eval_on_selector("#canvas", "c => c.width") == 12 * 24  # whole device pixels a cell
        assert page.locator("#pen-colour").is_visible()
        for menu in CLASS_MENUS:
            assert class_names(page, menu) == list(SHAPES)
            assert page.locator(menu).input_value() == ""
        page.wait_for_function("() => document.querySelector('#ed-picker canvas').width === 12")
        assert page.eval_on_selector("#up-picker canvas", "c => c.width") == 12

        # Generate with b: the request names b, b's weights answer, and the image is 12x12 RGB.
        page.select_option("#gen-n", "1")
        page.select_option("#gen-label", label="star")
        page.fill("#gen-seed", "7")
        with page.expect_response(is_generate) as answered:
            page.click("#generate-button")
        assert named_model(answered.value.request) == "b"
        assert answered_by(answered.value) == "b"
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#gen-results figcaption").first.text_content() == "star #7"
        assert decoded(page.locator("#gen-results img").first.get_attribute("src") or "").shape == (12, 12, 3)

        # Complete, score and upscale with b: every multipart form names b too.
        page.locator("#ed-picker canvas").nth(7).click()
        page.wait_for_function("() => state.image.some((v) => v > 0)")
        page.click("#mask-top")
        page.select_option("#cmp-n", "1")
        page.select_option("#cmp-particles", "1")
        page.click("#complete-button")
        page.wait_for_selector("#cmp-results figure img:not(.partial)", timeout=60_000)
        assert decoded(page.locator("#cmp-results img").first.get_attribute("src") or "").shape == (12, 12, 3)
        page.click("#score-button")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=60_000)
        posterior = page.locator("#posterior li").all_text_contents()
        assert sorted(line.split(":")[0] for line in posterior) == sorted(SHAPES)
        page.locator("#up-picker canvas").nth(1).click()
        page.select_option("#up-n", "1")
        page.select_option("#up-particles", "1")
        page.click("#upscale-button")
        page.wait_for_function(
            "() => document.querySelector('#up-status').textContent.includes('block means')", timeout=60_000
        )
        sample = decoded(page.locator("#up-results img").nth(2).get_attribute("src") or "")
        assert sample.shape == (12, 12, 3)
        routes = sorted(urlparse(r.url).path for r in calls)
        assert routes == ["/complete", "/generate", "/likelihood", "/likelihood", "/upscale"]
        for request in calls:
            assert named_model(request) == "b", request.url
            assert answered_by(request.response()) == "b", request.url

        # Back to a: its size, grayscale pen and Fashion-MNIST menus again, and a's weights answer.
        page.select_option("#model", "a")
        page.wait_for_function("() => state.size === 28")
        assert page.eval_on_selector("#canvas", "c => c.width") == 280
        assert not page.locator("#pen-colour").is_visible()
        for menu in CLASS_MENUS:
            assert class_names(page, menu) == list(FASHION_CLASSES)
        with page.expect_response(is_generate) as answered:
            page.click("#generate-button")
        assert named_model(answered.value.request) == "a"
        assert answered_by(answered.value) == "a"
        # b's image stays until a's replaces it.
        page.wait_for_function(
            "() => document.querySelector('#gen-results img:not(.partial)')?.naturalWidth === 28",
            timeout=60_000,
        )
        assert decoded(page.locator("#gen-results img").first.get_attribute("src") or "").shape == (28, 28, 3)
        assert not errors, errors


def test_a_model_that_cannot_serve_is_listed_but_not_chosen_and_one_model_needs_no_picker(
    browser: Browser,
) -> None:
    fashion = random_model("gated", 10, size=28, levels=16, channels=8, layers=2, seed=4)
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"a": fashion})
    with running_server(app) as url:
        # One model: no picker, and the page is that model's, as it was before there were several.
        page, errors, _ = open_page(browser, url)
        assert not page.locator("#model").is_visible()
        assert class_names(page, "#gen-label") == list(FASHION_CLASSES)
        page.close()

        # A broken model beside it (in-memory models cannot break, so /models is rewritten here).
        def with_a_broken_model(route: Route) -> None:
            listing = route.fetch().json()
            broken = {**listing[0], "name": "broken", "default": False, "loaded": False, "info": None}
            broken["error"] = "the weights file is truncated"
            route.fulfill(json=[broken, *listing])

        page, more_errors, _ = open_page(browser, url, with_a_broken_model)
        assert page.locator("#model").is_visible()
        assert options(page, "#model") == [("broken", "broken (cannot serve)"), ("a", "a (default)")]
        assert page.locator("#model option[value=broken]").is_disabled()
        assert page.get_attribute("#model option[value=broken]", "title") == "the weights file is truncated"
        assert page.locator("#model").input_value() == "a"
        assert class_names(page, "#gen-label") == list(FASHION_CLASSES)
        page.close()
        assert not errors + more_errors, errors + more_errors
