"""The web page of `text4vis serve` in a real browser: Debian's chromium driven by Playwright (no browser
download). Upload a real clip through the file input, see the top label, type custom labels and see them
used, an error shown in the page, and a screenshot. Without a browser the test is skipped, except with
CI=true, where a missing browser fails the run."""
from __future__ import annotations

import os
import shutil

import httpx
import pytest
from conftest import SHARED_VIDEOS
from serving import Server

from text4vis import cli

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.server]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLIP = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
MINE = ["arm wrestling", "cooking", "riding a bike"]


def browser_or_skip():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why, sync_playwright = "Playwright for Python is not installed (pip install playwright)", None
    if why is None and not os.path.isfile(CHROMIUM):
        why = "no chromium browser (apt-get install chromium)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}: the page must be tested in a real browser")
        pytest.skip(why)
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    clip_file = str(tiny_dir / "openai_sd.pt")
    index_dir = tmp_path_factory.mktemp("browser_index") / "clips"
    assert cli.main(["index", "build", CLIP, os.path.join(SHARED_VIDEOS, "cleaning_pool_xvid_mp3.avi"),
                     "--out", str(index_dir), "--clip", clip_file, "--frames", "4", "--device", "cpu"]) == 0
    s = Server(tmp_path_factory.mktemp("browser_server"), clip_file, "--decode-workers", "1", "--index", str(index_dir))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def test_page_in_chromium(server, tmp_path):
    sync_playwright = browser_or_skip()
    expected = httpx.post(server.url + "/v1/predict", files={"video": (os.path.basename(CLIP), open(CLIP, "rb").read())},
                          timeout=60).json()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            messages = []
            page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelector('#model').textContent.includes('101 labels')")

            page.set_input_files("#file", CLIP)  # choosing a file starts recognition
            page.wait_for_selector("#top li .label", timeout=60_000)
            shown = page.locator("#top li .label").all_inner_texts()
            assert shown == [t["label"] for t in expected["top"]]  # the model's top-5, best first
            assert page.locator("#top li .pct").first.inner_text() == f"{100 * expected['top'][0]['score']:.1f}%"
            assert page.locator("#preview").is_visible() and page.locator("#error").is_hidden()

            page.fill("#labels", "\n".join(MINE))
            page.check("#want-timeline")  # and the timeline of the same video, with the same labels
            page.click("#go")
            page.wait_for_function("document.querySelector('#result-meta').textContent.includes('your 3 labels')",
                                   timeout=60_000)
            shown = page.locator("#top li .label").all_inner_texts()
            assert sorted(shown) == sorted(MINE)  # only the custom labels, all three
            page.wait_for_selector("#timeline .seg", timeout=60_000)
            segments = page.locator("#timeline .seg").all_inner_texts()
            assert segments and set(segments) <= set(MINE)

            page.fill("#query", "someone cleaning a pool")  # the index is loaded: search by text
            page.press("#query", "Enter")
            page.wait_for_selector("#hits li .what", timeout=60_000)
            hits = page.locator("#hits li .what").all_inner_texts()
            assert sorted(hits) == sorted(["arm_wrestling_h264.mp4", "cleaning_pool_xvid_mp3.avi"])
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "serve.png"))
            assert (tmp_path / "serve.png").stat().st_size > 10_000

            page.fill("#labels", "cooking\ncooking")  # the server's 400 is shown in the page
            page.click("#go")
            page.wait_for_selector("#error:not([hidden])", timeout=60_000)
            assert "appears twice" in page.locator("#error").inner_text()
            assert not [m for m in messages if "Uncaught" in m]
        finally:
            browser.close()
