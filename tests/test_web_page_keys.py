"""The web page and API keys: a service hosted for others asks for a key (401), and the page asks
the user for it, keeps it in the tab's session storage and sends it with every call; a service
without keys shows no key form. Neither breaks the Content-Security-Policy every page now has
(headless Chromium by Playwright against a real server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Browser, Page, Request, Response, expect

from app.main import create_app
from app.security.keys import new_key
from app.settings import Settings
from tests.conftest import random_model
from tests.server import running_server

KEY_ITEM = "pixelcnn-api-key"  # the sessionStorage item api.js keeps the key in


def open_page(browser: Browser, url: str) -> tuple[Page, list[str], list[Request]]:
    """The page as it loads (not waiting for its model); the console messages and script errors it
    logs, and every request it sends."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    messages: list[str] = []
    requests: list[Request] = []
    page.on("console", lambda message: messages.append(f"console {message.type}: {message.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    page.on("request", lambda request: requests.append(request))
    page.goto(url + "/")
    return page, messages, requests


def policy_violations(messages: list[str]) -> list[str]:
    """What Chromium logs when the Content-Security-Policy blocks something, and script errors."""
    return [
        m
        for m in messages
        if "Content Security Policy" in m or "Refused to" in m or m.startswith("pageerror")
    ]


# Waits use expect(), not wait_for_function("expression"): Playwright polls an expression by eval,
# which the page's policy (script-src 'self', no 'unsafe-eval') refuses after the first try.
def wait_for_model(page: Page) -> None:
    expect(page.locator("#model-info")).to_contain_text("parameters", timeout=30_000)


def answer_of(path: str, status: int) -> Callable[[Response], bool]:
    return lambda r: urlparse(r.url).path == path and r.status == status


def is_generate(request: Request) -> bool:
    return urlparse(request.url).path == "/generate"


def test_the_page_asks_for_a_key_keeps_it_for_the_tab_and_sends_it(browser: Browser, tmp_path: Path) -> None:
    key, line = new_key("tester")
    keys_file = tmp_path / "keys"
    keys_file.write_text(line + "\n")
    model = random_model("gated", 10, size=10, levels=16, channels=8, layers=2, seed=1)
    app = create_app(
        Settings(api_keys_file=keys_file, max_batch_delay_ms=5, classifier=None), models={"a": model}
    )
    with running_server(app) as url:
        page, messages, requests = open_page(browser, url)

        # On load /models answers 401: the key form, with the server's reason, and no model yet.
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.locator("#api-key").is_visible()
        assert page.get_attribute("#api-key", "type") == "password"
        assert (page.locator("label", has=page.locator("#api-key")).text_content() or "").startswith(
            "API key"
        )
        expect(page.locator("#key-status")).to_contain_text("key is needed")
        assert "loading model" in (page.locator("#model-info").text_content() or "")

        # Generate meanwhile: refused too, and it waits for the key rather than failing.
        page.select_option("#gen-n", "1")
        page.fill("#gen-seed", "3")
        with page.expect_response(answer_of("/generate", 401)):
            page.click("#generate-button")

        # A wrong key: refused again, the reason shown, the form stays, and the key is not kept.
        page.fill("#api-key", "pcnn_not-a-key")
        with page.expect_response(answer_of("/models", 401)):
            page.click("#key-button")
        expect(page.locator("#key-status")).to_contain_text("not valid")
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.evaluate(f"sessionStorage.getItem('{KEY_ITEM}')") is None
        assert "loading model" in (page.locator("#model-info").text_content() or "")

        # The right key: the models load and the waiting generate is sent again, with the key.
        page.fill("#api-key", key)
        with (
            page.expect_response(answer_of("/models", 200)) as models,
            page.expect_response(answer_of("/generate", 200)) as generated,
        ):
            page.press("#api-key", "Enter")
        assert models.value.request.headers["authorization"] == f"Bearer {key}"
        assert generated.value.request.headers["authorization"] == f"Bearer {key}"
        wait_for_model(page)
        assert page.locator("#key-form").is_hidden()
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#gen-results img").count() == 1

        # Kept for this tab only: in sessionStorage, nothing in localStorage.
        assert page.evaluate(f"sessionStorage.getItem('{KEY_ITEM}')") == key
        assert page.evaluate("localStorage.length") == 0

        # A reload in the same tab asks no more: the stored key goes with /models and a generate.
        with page.expect_response(answer_of("/models", 200)) as models:
            page.reload()
        assert models.value.request.headers["authorization"] == f"Bearer {key}"
        wait_for_model(page)
        assert page.locator("#key-form").is_hidden()
        page.select_option("#gen-n", "1")
        with page.expect_request(is_generate) as sent:
            page.click("#generate-button")
        assert sent.value.headers["authorization"] == f"Bearer {key}"
        response: Response | None = sent.value.response()
        assert response is not None and response.status == 200
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)

        # The key never appears in an address, and nothing was blocked by the policy.
        assert not [r.url for r in requests if key in r.url]
        assert not policy_violations(messages), messages
        page.close()

        # Another tab (a new browsing context) has no key: it asks again.
        page, messages, _ = open_page(browser, url)
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.evaluate(f"sessionStorage.getItem('{KEY_ITEM}')") is None
        page.close()
        assert not policy_violations(messages), messages


def test_without_keys_the_page_shows_no_key_form_and_breaks_no_policy(browser: Browser) -> None:
    model = random_model("gated", 10, size=10, levels=16, channels=8, layers=2, seed=1)
    app = create_app(Settings(max_batch_delay_ms=5, classifier=None), models={"a": model})
    with running_server(app) as url:
        page, messages, _ = open_page(browser, url)
        wait_for_model(page)
        assert page.locator("#key-form").is_hidden()
        assert not page.locator("#api-key").is_visible()

        page.select_option("#gen-n", "1")
        with page.expect_request(is_generate) as sent:
            page.click("#generate-button")
        assert "authorization" not in sent.value.headers
        response = sent.value.response()
        assert response is not None and response.status == 200
        assert "content-security-policy" in response.headers  # the policy the page ran under
        page.wait_for_selector("#gen-results figure img:not(.partial)", timeout=60_000)
        assert page.locator("#key-form").is_hidden()
        assert page.evaluate("sessionStorage.length") == 0
        page.close()
        assert not policy_violations(messages), messages
