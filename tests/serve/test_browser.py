"""The web page in headless Chromium: upload glyphs, compare before/after pixel by pixel, fail, narrow screens.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Skipped only when it is missing outside CI;
with ``CI`` set a missing browser is a failure, so CI always runs this test.
``GLEANSR_SCREENSHOT_DIR=DIR`` keeps a screenshot of each state the tests reach (the resized before
view, a failed card, the 390 px layout); ``GLEANSR_UPDATE_SCREENSHOT=1`` refreshes the README's.
"""
from __future__ import annotations

import io
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import MODEL, SAMPLES, glyph_upscaler, sample_paths, server  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What Chromium needs as root on a machine with no network: no sandbox, no background fetches.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-color-profile=srgb"]  # screenshots hold the page's own pixel values
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "serve_page.png"
WAIT_MS = 120_000  # a model run on a loaded CI machine


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


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page whose console errors and failed answers (HTTP >= 400) are kept for the test to judge."""

    def __init__(self, browser, width: int):
        self.page = browser.new_page(viewport={"width": width, "height": 800})
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"script: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status} {r.url}"))

    def open(self, url: str):
        self.page.goto(url + "/")
        self.page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached", timeout=30_000)
        return self.page

    def unexpected(self, *refused: str) -> list[str]:
        """Errors other than the server's answers to the uploads the test expects to be refused
        (Chromium logs each such answer to the console as a failed resource)."""
        expected = [f"HTTP {status} " for status in refused]
        left = [e for e in self.errors if not (e.startswith("HTTP ") or "status of" in e)]
        answers = [e for e in self.errors if e.startswith("HTTP ")]
        for want in expected:
            hit = next((a for a in answers if a.startswith(want) and "/v1/upscale" in a), None)
            assert hit, f"no {want} answer among {answers}"
            answers.remove(hit)
        return left + answers


@pytest.fixture
def watched(browser):
    made = []

    def make(width: int = 1000) -> Watched:
        made.append(Watched(browser, width))
        return made[-1]

    yield make
    for w in made:
        w.page.close()


def keep(page, name: str, tmp_path: Path) -> None:
    """A full-page screenshot (a real PNG), kept in GLEANSR_SCREENSHOT_DIR when that is set."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GLEANSR_SCREENSHOT_DIR"):
        folder = Path(os.environ["GLEANSR_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, folder / name)


def stage_pixels(page, card) -> np.ndarray:
    """What the user sees of a card's before/after box, as RGB pixels (device scale 1). The box may
    sit between pixels (the layout is in em); Chromium paints an image from the nearest whole pixel."""
    box = card.locator(".stage img.after").bounding_box()
    png = page.screenshot(clip={k: math.floor(v + 0.5) for k, v in box.items()})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def assert_only_live_controls(card) -> None:
    """A failed card: its message, no result, no download link, no broken image; the buttons it shows work."""
    assert card.locator(".message").is_visible()
    assert not card.locator(".compare").is_visible() and not card.locator("a.download").is_visible()
    for img in card.locator("img").all():
        if img.is_visible():
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), "a broken-image icon on a failed card"
    for button in card.locator("button").all():
        assert not button.is_visible() or button.is_enabled()


def test_page_upscales_glyphs_and_shows_before_after(server, watched, sample_paths, tmp_path):
    url, _ = server
    w = watched()
    page = w.open(url)
    assert "glyphs, 16x16 -> 128x128" in page.inner_text("#model")
    # a browser asks for the page's icon (without one: /favicon.ico, a 404 in its console)
    icon = page.evaluate("() => document.querySelector('link[rel=icon]')?.href")
    assert icon and page.request.get(icon).headers["content-type"] == "image/svg+xml"
    page.set_input_files("#files", [str(p) for p in sample_paths[:2]])
    from playwright.sync_api import expect

    expect(page.locator(".card .status.done")).to_have_count(2, timeout=WAIT_MS)  # page's CSP forbids eval
    card = page.locator(".card").first
    sizes = card.locator("img.after").evaluate("img => [img.naturalWidth, img.naturalHeight, img.width]")
    assert sizes == [128, 128, 128]
    before = card.locator("img.before").evaluate("img => [img.naturalWidth, img.width, getComputedStyle(img)"
                                                 ".imageRendering]")
    assert before == [16, 128, "pixelated"]  # the LR, shown nearest-neighbour at the result's size
    assert "before: the model's input (16x16, nearest neighbour)" in card.locator(".compare figcaption").inner_text()
    card.locator(".slider").fill("25")
    assert card.locator(".before-clip").evaluate("el => el.style.width") == "25%"
    link = card.locator("a.download")
    assert link.get_attribute("download").endswith("_x8.png") and link.get_attribute("href").startswith("blob:")
    assert w.unexpected() == []  # no console error, no 404 (the favicon is served)
    keep(page, "page.png", tmp_path)
    if os.environ.get("GLEANSR_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "page.png", SCREENSHOT)


def test_before_view_is_the_models_input_after_crop_and_shrink(server, watched, glyph_upscaler, tmp_path):
    """A 128x96 scan is refused in the page's words, then shrunk when asked: the before half is
    then the model's 16x16 input enlarged nearest-neighbour, not the scan."""
    from gleansr.pipeline.images import load_image, quantize

    url, _ = server
    scan = tmp_path / "scan.png"
    Image.open(sorted((SAMPLES / "hr").glob("*.png"))[0]).convert("RGB").crop((0, 16, 128, 112)).save(scan)
    w = watched()
    page = w.open(url)
    page.set_input_files("#files", str(scan))
    card = page.locator(".card")
    card.locator(".status.failed").wait_for(timeout=WAIT_MS)
    message = card.locator(".message").inner_text()
    assert message.startswith("scan.png (128x96) is larger than the 16x16 input of glean_glyphs_8x")
    assert "Tick \u201cshrink larger inputs\u201d and press \u201ctry again\u201d" in message
    assert "resize=true" not in message and "/v1/" not in message
    assert_only_live_controls(card)
    keep(page, "failed_too_large.png", tmp_path)
    page.check("#resize")
    card.locator("button.retry").click()
    card.locator(".status.done").wait_for(timeout=WAIT_MS)
    assert not card.locator(".message").is_visible()
    assert card.locator("img.before").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [16, 16]

    seen = quantize(glyph_upscaler.prepare(load_image(scan)).image.rgb, 8)  # centre crop 96x96, bicubic to 16x16
    enlarged = seen.repeat(8, axis=0).repeat(8, axis=1)
    result = np.asarray(glyph_upscaler.upscale(Image.open(scan)).convert("RGB"))
    card.locator(".slider").fill("50")
    shown = stage_pixels(page, card)
    assert shown.shape == (128, 128, 3)
    assert np.array_equal(shown[:, :64], enlarged[:, :64])  # before: exactly what the model saw
    assert np.abs(shown[:, 64:].astype(int) - result[:, 64:]).max() <= 1  # after: the model's output
    card.locator(".slider").fill("100")
    assert np.array_equal(stage_pixels(page, card), enlarged)
    assert w.unexpected("422") == []
    card.locator(".slider").fill("50")
    keep(page, "before_view_resized.png", tmp_path)


def test_failed_card_has_no_dead_controls(server, watched, tmp_path):
    url, _ = server
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture at all\n")
    w = watched()
    page = w.open(url)
    assert page.is_disabled("#faces")  # the glyph model: whole photos need a face model
    page.locator("#model").evaluate("s => { s.value = 'glean_ffhq_16x'; s.dispatchEvent(new Event('change')); }")
    assert page.is_enabled("#faces")
    page.locator("#model").evaluate(f"s => {{ s.value = '{MODEL}'; s.dispatchEvent(new Event('change')); }}")
    assert page.is_disabled("#faces")
    page.set_input_files("#files", str(notes))
    card = page.locator(".card")
    card.locator(".status.failed").wait_for(timeout=60_000)
    # a problem with the picture itself: the server's sentence, and no "try again" that cannot help
    assert card.locator(".message").inner_text() == "cannot read image notes.png: not an image file Pillow can decode"
    assert_only_live_controls(card)
    assert not card.locator("button.retry").is_visible() and card.locator("button.remove").is_visible()
    assert not card.locator("img.lr").is_visible()  # this browser cannot show it either: no broken icon
    keep(page, "failed_card.png", tmp_path)
    card.locator("button.remove").click()
    assert page.locator(".card").count() == 0
    assert w.unexpected("415") == []


def test_narrow_screen_has_no_sideways_scrolling(server, watched, sample_paths, tmp_path):
    url, _ = server
    w = watched(width=390)
    page = w.open(url)
    long_name = tmp_path / ("a_very_long_file_name_without_any_break_" * 3 + ".png")
    shutil.copyfile(sample_paths[0], long_name)
    refused = tmp_path / ("a_large_scan_with_a_name_as_long_as_the_screen_is_wide_" * 2 + ".png")
    Image.open(sorted((SAMPLES / "hr").glob("*.png"))[0]).save(refused)
    page.set_input_files("#files", [str(long_name), str(sample_paths[1]), str(refused)])
    page.locator(".card .status.done").nth(1).wait_for(timeout=WAIT_MS)
    page.locator(".card .status.failed").wait_for(timeout=WAIT_MS)  # a long message with a long name
    widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth, "
                           "Math.max(...[...document.querySelectorAll('body *')].map("
                           "e => e.getBoundingClientRect().right))]")
    assert max(widths) <= 390, widths
    assert page.locator("#model").bounding_box()["width"] < 390
    assert w.unexpected("422") == []
    keep(page, "narrow_390.png", tmp_path)
