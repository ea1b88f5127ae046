"""The web page of `text4vis serve` in a real browser: Debian's chromium driven by Playwright (no browser
download), at 1280 and at 390 px, against a real server with an API key and an index. Upload a real clip,
see the top labels of that file and no other (a slower earlier choice never shows its answer under a newer
one), the timeline hidden after unticking / a new video / an error, the API key asked for in the page's own
words and sent with Enter, custom labels (comma-separated too), cancel, the JSON / curl / download view, the
keyboard path to the file chooser, /docs working offline; screenshots (TEXT4VIS_SCREENSHOTS=DIR keeps them).
Without a browser the test is skipped, except with CI=true, where a missing browser fails the run."""
from __future__ import annotations

import json
import os
import shutil
import time

import httpx
import numpy as np
import pytest
from conftest import SHARED_VIDEOS, write_video
from serving import Server

from text4vis import cli

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.server]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLIP = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
OTHER = os.path.join(SHARED_VIDEOS, "rotate90_keyboard_3frames_0.1s.mov")
MINE = ["arm wrestling", "cooking", "riding a bike"]
KEY = "browser-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


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
    folder = tmp_path_factory.mktemp("browser_server")
    (folder / "key.txt").write_text(KEY + "\n")
    s = Server(folder, clip_file, "--decode-workers", "2", "--index", str(index_dir),
               "--api-key-file", str(folder / "key.txt"))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def slow_video(tmp_path_factory) -> str:
    """150 s at 4 fps: its 4x3 views take the server a while to decode (longer than the short clips)."""
    path = str(tmp_path_factory.mktemp("slow") / "slow_one.mp4")
    write_video(path, (np.random.RandomState(2).rand(600, 96, 96, 3) * 255).astype(np.uint8), fps=4)
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("TEXT4VIS_SCREENSHOTS") or str(tmp_path_factory.mktemp("shots"))
    os.makedirs(folder, exist_ok=True)
    return folder


def expected(server, path: str, **fields) -> dict:
    r = httpx.post(server.url + "/v1/predict", files={"video": (os.path.basename(path), open(path, "rb").read())},
                   data={k: str(v) for k, v in fields.items()}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def labels_shown(page) -> list[str]:
    return page.locator("#top li .label").all_inner_texts()


def wait_for_log(server, text: str) -> None:
    for _ in range(600):
        if text in server.log_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never in the server log:\n{server.log_text()[-2000:]}")


def open_page(browser, server, width: int, height: int, key: bool = True):
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#model').textContent.includes('101 labels')")
    if key:
        page.evaluate(f"sessionStorage.setItem('text4vis-key', '{KEY}')")
    return page


def keyboard_file_chooser(page, tries: int = 3):
    """Enter on the focused drop zone opens the file chooser. Chromium drops an occasional keyboard-opened
    chooser when the machine is busy, so the key is pressed again (at most `tries` times, 10 s each)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    for attempt in range(tries):
        try:
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press("Enter")
            return chooser.value
        except PlaywrightTimeout:
            assert page.evaluate("document.activeElement.id") == "drop"  # focus stayed on the drop zone
            if attempt == tries - 1:
                raise


def test_page_at_1280(server, slow_video, shots):
    sync_playwright = browser_or_skip()
    want = expected(server, CLIP)
    want_other = expected(server, OTHER)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = open_page(browser, server, 1280, 860, key=False)
            assert page.get_attribute("#busy", "aria-live") == "polite"
            assert page.get_attribute("#results", "aria-live") == "polite"

            # no key yet: the page asks for it in its own words; Enter in the key field sends the request
            page.set_input_files("#file", CLIP)
            page.wait_for_selector("#error:not([hidden])", timeout=60_000)
            assert "type it in the API key field and press Enter" in page.locator("#error").inner_text()
            assert page.locator("#apikey").is_visible() and page.evaluate("document.activeElement.id") == "apikey"
            page.fill("#apikey", KEY)
            page.press("#apikey", "Enter")
            page.wait_for_selector("#top li .label", timeout=60_000)
            assert labels_shown(page) == [t["label"] for t in want["top"]]  # the model's top-5, best first
            assert page.locator("#top li .pct").first.inner_text() == f"{100 * want['top'][0]['score']:.1f}%"
            assert page.locator("#result-file").inner_text() == "arm_wrestling_h264.mp4"
            assert page.locator("#preview").is_visible() and page.locator("#error").is_hidden()

            # the JSON view, curl and download are the request and the record
            page.click("#raw summary")
            assert json.loads(page.locator("#json").inner_text()) == want
            curl = page.locator("#curl").inner_text()
            assert curl.startswith("curl -F $'video=@arm_wrestling_h264.mp4' -F $'topk=5' -F $'views=1x1'")
            assert "Bearer $TEXT4VIS_KEY" in curl and curl.endswith(server.url + "/v1/predict") and KEY not in curl
            with page.expect_download() as download:
                page.click("#download")
            assert download.value.suggested_filename == "arm_wrestling_h264.text4vis.json"
            assert json.loads(open(download.value.path()).read()) == want

            # B chosen while the slower A is still being recognised: only B's answer, under B's name
            page.select_option("#views", "4x3")
            page.set_input_files("#file", slow_video)
            page.wait_for_selector("#busy:not([hidden])")
            page.select_option("#views", "1x1")
            page.set_input_files("#file", OTHER)
            page.wait_for_function("document.querySelector('#result-file').textContent.includes('rotate90')")
            page.wait_for_selector("#top li .label", timeout=60_000)
            assert labels_shown(page) == [t["label"] for t in want_other["top"]]
            wait_for_log(server, "slow_one.mp4: the client went away")  # A was aborted and its work stopped
            time.sleep(0.5)
            assert labels_shown(page) == [t["label"] for t in want_other["top"]]
            assert page.locator("#result-file").inner_text() == os.path.basename(OTHER)

            # custom labels, comma-separated, and the timeline of the same video with the same labels
            page.set_input_files("#file", CLIP)
            page.wait_for_selector("#top li .label", timeout=60_000)
            page.fill("#labels", ", ".join(MINE))
            page.check("#want-timeline")
            page.click("#go")
            page.wait_for_function("document.querySelector('#result-meta').textContent.includes('your 3 labels')",
                                   timeout=60_000)
            assert sorted(labels_shown(page)) == sorted(MINE)  # only the custom labels, all three
            page.wait_for_selector("#timeline .seg", timeout=60_000)
            assert set(page.locator("#timeline .seg").all_inner_texts()) <= set(MINE)
            assert "arm_wrestling_h264.mp4" in page.locator("#timeline-meta").inner_text()

            page.fill("#query", "someone cleaning a pool")  # the index is loaded: search by text
            page.press("#query", "Enter")
            page.wait_for_selector("#hits li .what", timeout=60_000)
            hits = page.locator("#hits li .what").all_inner_texts()
            assert sorted(hits) == sorted(["arm_wrestling_h264.mp4", "cleaning_pool_xvid_mp3.avi"])
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=os.path.join(shots, "serve_1280.png"), full_page=True)

            page.uncheck("#want-timeline")  # unticked: the timeline goes
            assert page.locator("#timeline-box").is_hidden()
            page.check("#want-timeline")
            page.set_input_files("#file", OTHER)  # a new video: the old timeline goes at once
            assert page.locator("#timeline-box").is_hidden()
            page.wait_for_selector("#timeline .seg", timeout=60_000)
            assert "rotate90" in page.locator("#timeline-meta").inner_text()

            page.fill("#labels", "cooking\ncooking")  # the server's 400 is shown, and no old result with it
            page.click("#go")
            page.wait_for_selector("#error:not([hidden])", timeout=60_000)
            assert "appears twice" in page.locator("#error").inner_text()
            assert page.locator("#timeline-box").is_hidden() and labels_shown(page) == []

            page.fill("#labels", "cooking")  # one label always scores 100%: the page says so
            assert "always scores 100%" in page.locator("#labels-hint").inner_text()
            assert "warn" in page.get_attribute("#one-label", "class")

            page.fill("#labels", "")  # cancel: the request is dropped, nothing is shown for it
            page.select_option("#views", "4x3")
            page.set_input_files("#file", slow_video)
            page.wait_for_selector("#cancel:not([hidden])")
            page.click("#cancel")
            assert page.locator("#busy").is_hidden() and "cancelled" in page.locator("#result-meta").inner_text()
            assert labels_shown(page) == []
            assert not [m for m in page.errors if "Uncaught" in m or "TypeError" in m], page.errors
        finally:
            browser.close()


def test_page_at_390_keyboard_and_offline_docs(server, shots):
    sync_playwright = browser_or_skip()
    want = expected(server, CLIP)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = open_page(browser, server, 390, 844)
            for _ in range(10):  # the drop zone is on the keyboard's path
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "drop":
                    break
            assert page.evaluate("document.activeElement.id") == "drop"
            chooser = keyboard_file_chooser(page)
            chooser.set_files(CLIP)
            page.wait_for_selector("#top li .label", timeout=60_000)
            page.wait_for_timeout(500)  # the bars grow in 0.35 s
            assert labels_shown(page) == [t["label"] for t in want["top"]]
            track = page.locator("#top li .track").first.bounding_box()
            fill = page.locator("#top li .fill").first.bounding_box()
            assert track["width"] > 250 and fill["width"] > 100  # the bars keep the card's width
            first = page.locator("#top li").first.bounding_box()  # scrolled into view: the result is on screen
            assert 0 <= first["y"] and first["y"] + first["height"] <= 844
            page.screenshot(path=os.path.join(shots, "serve_390.png"))

            # /docs: Swagger UI from this server alone (every other address is refused)
            outside = []
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
                          else (outside.append(route.request.url), route.abort()))
            docs = context.new_page()
            docs.goto(server.url + "/docs")
            docs.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=60_000)
            paths = docs.locator(".opblock-summary-path").all_inner_texts()
            assert "/v1/predict" in paths and "/v1/timeline" in paths and outside == []
            docs.screenshot(path=os.path.join(shots, "docs.png"))
            assert not [m for m in page.errors if "Uncaught" in m or "TypeError" in m], page.errors
        finally:
            browser.close()
