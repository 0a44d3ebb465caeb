"""The drawing page in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Start `python -m mnistlab.serve` on 127.0.0.1, draw a stroke with the mouse, and check that the page shows the
prediction the API returned, its top-3 and the 28×28 preview of what the model saw; then Clear.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.browser import CHROMIUM, FLAGS
from helpers.cli import serving
from helpers.data import write_checkpoint

if CHROMIUM is None and os.environ.get("MNISTLAB_REQUIRE_BROWSER"):  # set by .ci/run: CI must run this test
    raise RuntimeError("MNISTLAB_REQUIRE_BROWSER is set but no chromium is on PATH (apt-get install chromium)")
pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install Debian's `chromium` package (.ci/run does)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(write_checkpoint(tmp_path_factory.mktemp("serve") / "best.ckpt")) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # Playwright gives the browser a new, empty profile
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1000, "height": 700})
        finally:
            browser.close()


def test_draw_a_digit_and_see_its_prediction(server, page, tmp_path: Path):
    page.goto(server)
    box = page.locator("#canvas").bounding_box()
    x, y = box["x"], box["y"]
    with page.expect_response("**/api/v1/predict") as answer:
        page.mouse.move(x + 100, y + 60)
        page.mouse.down()
        for step in range(1, 21):  # a 7: a bar, then a long diagonal
            page.mouse.move(x + 100 + 4 * step, y + 60, steps=2) if step <= 10 else page.mouse.move(
                x + 140 - 3 * (step - 10), y + 60 + 15 * (step - 10), steps=2
            )
        page.mouse.up()
    assert answer.value.status == 200
    body = answer.value.json()
    page.wait_for_selector("body[data-state=done]", timeout=10_000)

    assert page.inner_text("#label") == body["label"]
    entries = page.locator("#top3 .entry").all_inner_texts()
    assert entries == [f"{t['label']}: {100 * t['probability']:.1f} %" for t in body["top3"]]

    # the preview shows the 28×28 input the API returned, white ink on black
    preview = page.evaluate(
        """() => Array.from(document.getElementById('preview').getContext('2d')
                .getImageData(0, 0, 28, 28).data).filter((_, i) => i % 4 === 0)"""
    )
    expected = [round(min(1, max(0, v)) * 255) for row in body["input"] for v in row]
    assert len(preview) == 784 and sum(preview) > 0
    assert max(abs(a - b) for a, b in zip(preview, expected, strict=True)) <= 1
    page.screenshot(path=str(tmp_path / "drawn.png"))

    page.click("#clear")
    assert page.inner_text("#label") == "" and page.locator("#top3 li").count() == 0
    assert page.evaluate("document.body.dataset.state") == "empty"


def test_api_docs_render_offline(server, page):
    """/docs draws the endpoints from Swagger UI files served by mnistlab itself; any request that would leave
    the machine (a CDN) is refused and counted."""
    outside: list[str] = []

    def only_loopback(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    try:
        page.goto(server + "docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
    finally:
        page.unroute("**/*")
    assert "/api/v1/predict" in [p.strip() for p in paths] and "/health" in [p.strip() for p in paths]
    assert outside == []
