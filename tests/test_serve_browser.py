"""The web page in headless Chromium (Debian's package, via Playwright) against a live server on loopback."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> str:
    """Path of Debian's Chromium, installing the package with apt-get when running as root; skip otherwise."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
            "install Debian's 'chromium' package to run the browser tests."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"Chromium is not installed and apt-get could not install it ({exc}).")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed 'chromium' but {CHROMIUM} is still missing.")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api")
    return ensure_chromium()


@pytest.fixture(scope="module")
def server_url(tiny_pipeline):
    """A uvicorn server with the tiny models on 127.0.0.1 (a free port), in a thread of this process; its page
    offers the examples it would offer with the shipped ShapeWorld models."""
    pytest.importorskip("fastapi")
    from segzero.serve import ServeSettings, create_app
    from segzero.serve.examples import page_examples
    from segzero.serve.server import LoopbackServer
    from segzero.shapeworld.demo import shipped_models

    examples = page_examples(str(shipped_models()[0]))
    app = create_app(tiny_pipeline, ServeSettings(max_batch_size=4, max_request_chars=200), examples)
    with LoopbackServer(app) as server:
        yield server.url


@pytest.fixture
def page(chromium_path, server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        outside: list[str] = []

        def only_loopback(route):
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:  # the page must be self-contained: nothing may leave this machine
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_loopback)
        page.goto(server_url)
        yield page
        assert outside == [], f"the page tried to reach {outside}"
        browser.close()


def write_png(path: Path, width: int = 96, height: int = 64) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_segment_from_the_page(page, tmp_path):
    from playwright.sync_api import expect

    image = write_png(tmp_path / "shapes.png")
    page.get_by_label("Image", exact=True).set_input_files(str(image))
    expect(page.locator("#preview")).to_be_visible()
    request = page.get_by_label("Request", exact=True)
    request.click()
    request.type("the red square")
    # Count the pieces of text the page shows while the model writes (the stream, before the result): one
    # mutation record per piece, as the observer may be called once for pieces that arrived together.
    page.evaluate("""() => { window.pieces = 0; new MutationObserver((records) => {
        if (document.getElementById("live-text").textContent && document.getElementById("result").hidden)
            window.pieces += records.length; }).observe(document.getElementById("live-text"), {childList: true, characterData: true,
            subtree: true}); }""")
    request.press("Enter")
    expect(page.locator("#result")).to_be_visible(timeout=45_000)
    expect(page.locator("#status-text")).to_contain_text("Done in")
    assert page.evaluate("window.pieces") > 1
    expect(page.locator("#live")).to_be_hidden()  # the result replaced the live text
    expect(page.locator("#reasoning")).not_to_be_empty()
    expect(page.locator("#details")).to_contain_text("the red square")
    overlay = page.locator("#overlay-image")
    expect(overlay).to_be_visible()
    # The server's picture: the 96x64 image enlarged beside its drawn twin, a legend and the text.
    width, height = overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 2 * 96 and height > 64
    assert page.locator("#download-link").get_attribute("href").startswith("data:image/png;base64,")
    assert page.locator("#submit-button").is_enabled()
    assert page.locator("#progress").is_hidden()
    shot = tmp_path / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] > 0


def test_errors_drop_and_keyboard(page, tmp_path):
    from playwright.sync_api import expect

    # Focus order follows the form: image, the example images, request, button.
    page.get_by_label("Image", exact=True).focus()
    examples = page.locator("#example-list button")
    expect(examples).to_have_count(4)
    for n in range(4):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith("Example image:")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "request-input"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit-button"
    assert page.locator("#status").get_attribute("aria-live") == "polite"

    # No image yet: the page says so without calling the server.
    page.get_by_label("Request", exact=True).fill("anything")
    page.get_by_label("Request", exact=True).press("Enter")
    expect(page.locator("#error")).to_contain_text("Choose an image first")

    # The server's sentence is shown for a file that is not an image.
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(b"this is not an image")
    page.get_by_label("Image", exact=True).set_input_files(str(bogus))
    page.get_by_label("Request", exact=True).press("Enter")
    expect(page.locator("#error")).to_contain_text("not a supported image")
    expect(page.locator("#error")).to_have_attribute("role", "alert")

    # Dropping a file on the image box selects it.
    data = base64.b64encode(write_png(tmp_path / "drop.png", 20, 10).read_bytes()).decode()
    page.evaluate(
        """data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "drop.png", {type: "image/png"}));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    assert page.evaluate("document.getElementById('image-input').files[0].name") == "drop.png"
    expect(page.locator("#preview")).to_be_visible()


def test_the_page_names_the_models_and_offers_examples_that_suit_them(page, tiny_models):
    from playwright.sync_api import expect

    expect(page.locator("#models")).to_contain_text(f"reasoner {tiny_models.reasoner}")
    expect(page.locator("#models")).to_contain_text(f"segmenter {tiny_models.segmenter}")
    request = page.get_by_label("Request", exact=True)
    expect(request).to_have_attribute("placeholder", "e.g. the shape that would roll away if pushed")
    example = page.get_by_role("button", name="Example image: the shape that would roll away if pushed")
    example.click()
    expect(request).to_have_value("the shape that would roll away if pushed")
    expect(page.locator("#preview")).to_be_visible()
    assert page.evaluate("document.getElementById('image-input').files[0].type") == "image/png"
    page.locator("#submit-button").click()
    expect(page.locator("#result")).to_be_visible(timeout=45_000)
    expect(page.locator("#details")).to_contain_text("112 x 112 pixels")


def test_a_failed_request_clears_the_previous_answer(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_label("Image", exact=True).set_input_files(str(write_png(tmp_path / "a.png")))
    page.get_by_label("Request", exact=True).fill("the cup")
    page.get_by_label("Request", exact=True).press("Enter")
    expect(page.locator("#result")).to_be_visible(timeout=45_000)
    bogus = tmp_path / "b.png"
    bogus.write_bytes(b"not an image at all")
    page.get_by_label("Image", exact=True).set_input_files(str(bogus))
    page.get_by_label("Request", exact=True).press("Enter")
    expect(page.locator("#error")).to_contain_text("not a supported image")
    expect(page.locator("#result")).to_be_hidden()
    assert page.locator("#overlay-image").get_attribute("src") is None
    expect(page.locator("#reasoning")).to_be_empty()
