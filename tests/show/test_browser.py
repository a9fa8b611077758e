"""The demo page in a real headless browser (Debian's chromium driven by Playwright).

Needs the ``playwright`` Python package (dev extra) and a chromium binary (``.ci/browser.sh``
installs it; ``LRKIT_CHROMIUM`` overrides the path). Browsers are never downloaded. Outside CI a
missing piece skips this test with the reason; in CI (``CI`` set) it fails.
"""
import json
import os
from pathlib import Path

import pytest

from tests.show.helpers import CHROMIUM, quick_demo_dir

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need(condition: bool, what: str) -> None:
    if condition:
        return
    message = f"{what}; run .ci/browser.sh and pip install -e '.[dev]'"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser test cannot run: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need(sync_playwright is not None, "the playwright package is not installed")
    _need(Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_demo_page_in_a_real_browser(browser, tmp_path):
    out = quick_demo_dir()
    summary = json.loads((out / "summary.json").read_text())
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "index.html").resolve().as_uri(), wait_until="load")

    images = page.evaluate("""() => Array.from(document.images).map(i => ({
        complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
        shown_w: i.getBoundingClientRect().width, shown_h: i.getBoundingClientRect().height,
        alt: i.alt}))""")
    assert len(images) >= 4
    for image in images:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0, image
        assert image["shown_w"] > 0 and image["shown_h"] > 0, image

    shown = page.inner_text("#suggested-lr")
    assert float(shown) == pytest.approx(summary["suggested_lr"], rel=5e-3)
    assert shown == format(summary["suggested_lr"], ".3g")
    assert float(page.get_attribute("#suggested-lr", "data-value")) == summary["suggested_lr"]
    assert page.inner_text("#example-name") == summary["example"]
    for anchor in ("find", "compare", "schedules", "recipe"):
        assert page.locator(f"section#{anchor}").is_visible()

    shot = tmp_path / "demo-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("LRKIT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "demo-page.png").write_bytes(shot.read_bytes())

    assert not problems, problems
    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert not outside, f"the page asked the network for {outside}"
    page.close()
