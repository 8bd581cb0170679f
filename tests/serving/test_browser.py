"""The web page in a real browser (headless Chromium over CDP) against a real server: pick a photo and speech,
generate with the keyboard, and get a playable video as long as the speech; errors show as one line.

Set AVCT_UPDATE_SCREENSHOT=1 to refresh docs/serve_page.png (the README's picture) from this run."""
from __future__ import annotations

import io
import os
import re
import time

import pytest

from support.cdp_browser import Browser, find_chromium
from support.live_server import EXAMPLE_IMAGE, REPO, SPEECH_SECONDS

SCREENSHOT = REPO / "docs" / "serve_page.png"
STATE = """(() => {
  const video = document.getElementById('video');
  return {result: !document.getElementById('result').hidden, ready: video.readyState, duration: video.duration,
          error: document.getElementById('error').textContent, status: document.getElementById('status').textContent,
          progress: document.getElementById('progress').value, download: document.getElementById('download').href};
})()"""


@pytest.fixture
def browser(tmp_path):
    executable = find_chromium()
    if executable is None:
        reason = "headless chromium is not installed (scripts/setup.sh installs the Debian package when apt can)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # as with the shared data: in CI the browser test must run
        pytest.skip(reason)
    page = Browser(executable, tmp_path / "chromium-profile")
    yield page
    page.close()


def submit_with_keyboard(browser: Browser) -> None:
    browser.evaluate("document.getElementById('generate').focus()")
    browser.press_key("Enter", 13, "\r")


def test_page_generates_a_playable_video(serve, speech_2s, browser, tmp_path):
    server = serve()
    browser.open(server.url + "/")
    browser.wait_for("document.getElementById('limits').textContent.includes('600 s')", timeout=30)
    assert browser.evaluate("document.getElementById('render').value") == "sharp"  # defaults from /v1/config
    assert browser.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')"), \
        "this chromium cannot play H.264"

    # a file that is no picture: the server's one-line reason, shown on the page
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture", encoding="utf-8")
    browser.set_files("#image", not_image)
    browser.set_files("#audio", speech_2s)
    submit_with_keyboard(browser)
    error = browser.wait_for("document.getElementById('error').textContent", timeout=60)
    assert error.startswith("not a readable image: notes.png") and "\n" not in error

    browser.set_files("#image", EXAMPLE_IMAGE)
    submit_with_keyboard(browser)
    state = browser.wait_for(f"(s => (s.result && s.ready >= 1) || s.error ? s : null)({STATE})", timeout=600, every=0.5)
    assert state["error"] == "" and state["status"] == "Done: the video is below." and state["progress"] == 1
    assert abs(state["duration"] - SPEECH_SECONDS) <= 0.1, state
    assert state["download"].startswith(server.url + "/v1/jobs/") and state["download"].endswith("/video")
    assert browser.evaluate("document.activeElement.id") == "result-title"  # focus moves to the result

    # a decoded frame on screen for the picture
    browser.evaluate("document.getElementById('video').currentTime = 1.0")
    browser.wait_for("(v => v.readyState === 4 && !v.seeking)(document.getElementById('video'))", timeout=60)
    browser.evaluate("document.getElementById('result-title').blur()")
    time.sleep(1.0)  # let the player's controls settle (no buffering spinner in the picture)
    png = browser.screenshot()
    from PIL import Image

    with Image.open(io.BytesIO(png)) as shot:
        assert shot.size == browser.size
        if os.environ.get("AVCT_UPDATE_SCREENSHOT") == "1":
            shot.convert("RGB").save(SCREENSHOT, optimize=True)


def test_microphone_recording_is_uploaded_and_decoded(serve, browser):
    """MediaRecorder's webm (no duration in its header) reaches the server and is decoded to measure its length."""
    server = serve(max_audio_s=0.5)
    browser.open(server.url + "/")
    browser.wait_for("document.getElementById('limits').textContent.includes('0.5 s')", timeout=30)
    browser.set_files("#image", EXAMPLE_IMAGE)
    browser.evaluate("document.getElementById('record').click()")
    browser.wait_for("document.getElementById('record').getAttribute('aria-pressed') === 'true'", timeout=30)
    time.sleep(1.5)
    browser.evaluate("document.getElementById('record').click()")
    name = browser.wait_for("document.getElementById('record-state').textContent.startsWith('Recorded') && "
                            "document.getElementById('recording').src", timeout=30)
    assert name.startswith("blob:")
    submit_with_keyboard(browser)
    error = browser.wait_for("document.getElementById('error').textContent", timeout=120)
    match = re.fullmatch(r"audio recording\.(webm|ogg) is (\d+\.\d) s long; at most 0\.5 s are accepted", error)
    assert match and 1.0 <= float(match.group(2)) <= 3.0, error
