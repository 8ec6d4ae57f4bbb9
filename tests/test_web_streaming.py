"""The page watches the model draw: partial rows and a progress bar before the result, and a
Cancel button that closes the stream (headless Chromium against a real server)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser

from app.main import create_app
from app.settings import Settings
from tests.conftest import random_model
from tests.server import running_server
from tests.test_streaming import CANCELLED, RowGate, metric, wait_until

# Which rows of the first partial image are all grey (128), read back from the page.
GREY_ROWS = """img => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const rows = [];
  for (let y = 0; y < c.height; y++) {
    let grey = true;
    for (let x = 0; x < c.width; x++) grey = grey && d[4 * (y * c.width + x)] === 128;
    rows.push(grey);
  }
  return rows;
}"""


def test_the_page_shows_partial_rows_before_the_result_and_cancel_stops_the_work(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=4)
    service = create_app(Settings(max_batch_delay_ms=5, torch_threads=1), models={"model": model})
    held = RowGate(monkeypatch, at=12)  # the sampler waits after row 12 until the test has looked
    with running_server(service) as url, httpx.Client(base_url=url, timeout=60) as client:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_function(
            "() => document.querySelector('#model-info').textContent.includes('parameters')"
        )

        page.select_option("#gen-n", "4")
        page.fill("#gen-seed", "3")
        page.click("#generate-button")
        page.wait_for_function("() => document.querySelector('#gen-progress').value === 12", timeout=60_000)
        assert held.reached.is_set()
        partial = page.locator("#gen-results img.partial")
        assert partial.count() == 4
        assert page.locator("#gen-results img:not(.partial)").count() == 0  # no result yet
        assert page.locator("#generate-button").text_content() == "Cancel"
        assert page.locator("#gen-progress").is_visible()
        page.wait_for_function("() => document.querySelector('#gen-results img.partial').naturalWidth > 0")
        grey = partial.first.evaluate(GREY_ROWS)
        assert grey == [False] * 12 + [True] * 16  # twelve rows drawn, the rest still grey
        held.go.set()
        page.wait_for_selector("#gen-results img:not(.partial)", timeout=60_000)
        assert page.locator("#gen-results figure").count() == 4
        assert page.locator("#generate-button").text_content() == "Generate"
        assert not page.locator("#gen-progress").is_visible()

        # Cancel closes the stream; the server drops the work and counts it.
        cancelled = metric(client, CANCELLED)
        stopped = RowGate(monkeypatch, at=5)
        page.click("#generate-button")
        page.wait_for_function("() => document.querySelector('#gen-progress').value === 5", timeout=60_000)
        page.click("#generate-button")  # now Cancel
        page.wait_for_function("() => document.querySelector('#gen-status').textContent === 'cancelled'")
        wait_until(lambda: metric(client, CANCELLED) == cancelled + 1, "the cancellation on the server")
        stopped.go.set()
        assert page.locator("#generate-button").text_content() == "Generate"
        assert not errors, errors
