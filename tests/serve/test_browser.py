"""The web page in headless Chromium: upload a glyph, wait for the result, compare, screenshot.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Skipped only when it is missing outside CI;
with ``CI`` set a missing browser is a failure, so CI always runs this test.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import sample_paths, server  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What Chromium needs as root on a machine with no network: no sandbox, no background fetches.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "serve_page.png"


def _browser_or_skip():
    missing = None if Path(CHROMIUM).is_file() else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "the playwright package is not installed"
        sync_playwright = None
    if missing and os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {missing}")
    if missing:
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture
def page(tmp_path):
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1000, "height": 760})
        finally:
            browser.close()


def test_page_upscales_a_glyph_and_shows_before_after(server, page, sample_paths, tmp_path):
    url, _ = server
    page.goto(url + "/")
    page.wait_for_selector("#model option[value='glean_glyphs_8x']", state="attached", timeout=30_000)
    assert "glyphs, 16x16 -> 128x128" in page.inner_text("#model")
    page.set_input_files("#files", [str(p) for p in sample_paths[:2]])
    from playwright.sync_api import expect

    expect(page.locator(".card .status.done")).to_have_count(2, timeout=120_000)  # page's CSP forbids eval
    card = page.locator(".card").first
    sizes = card.locator("img.after").evaluate("img => [img.naturalWidth, img.naturalHeight, img.width]")
    assert sizes == [128, 128, 128]
    before = card.locator("img.before").evaluate("img => [img.naturalWidth, img.width, getComputedStyle(img)"
                                                 ".imageRendering]")
    assert before == [16, 128, "pixelated"]  # the LR, shown nearest-neighbour at the result's size
    card.locator(".slider").fill("25")
    assert card.locator(".before-clip").evaluate("el => el.style.width") == "25%"
    link = card.locator("a.download")
    assert link.get_attribute("download").endswith("_x8.png") and link.get_attribute("href").startswith("blob:")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GLEANSR_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_page_shows_the_servers_message_not_a_trace(server, page, tmp_path):
    url, _ = server
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture at all\n")
    page.goto(url + "/")
    page.wait_for_selector("#model option", state="attached", timeout=30_000)
    assert page.is_disabled("#faces")  # the glyph model: whole photos need a face model
    page.locator("#model").evaluate("s => { s.value = 'glean_ffhq_16x'; s.dispatchEvent(new Event('change')); }")
    assert page.is_enabled("#faces")
    page.locator("#model").evaluate("s => { s.value = 'glean_glyphs_8x'; s.dispatchEvent(new Event('change')); }")
    assert page.is_disabled("#faces")
    page.set_input_files("#files", str(notes))
    page.wait_for_selector(".card .status.failed", timeout=60_000)
    message = page.inner_text(".card .message")
    assert message == "cannot read image notes.png: not an image file Pillow can decode"
