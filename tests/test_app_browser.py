"""The web app served by ``pulse-jax app`` on a free local port, driven by headless Chromium
(Debian's ``chromium``; Playwright's Python API with that executable, no browser download)
and by ``gradio_client``: a photo in, the photo twice as large and every restart out; a bad
file shows its message and the page goes on; the API with only an image; two requests at
once, the second waiting with its place while the first shows its step and best l2, both
answered; nothing outside the work folder served; the work folder removed at exit.

One server for the module (the shipped 64x64 model, 5 steps, 2 restarts, upscale 2), so
its searches compile once. Chromium runs with no network: the flags below keep it from
trying (without them it floods refused connections).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.app

ROOT = pathlib.Path(__file__).resolve().parents[1]
FACE = ROOT / "examples" / "face_00.png"
PHOTO = ROOT / "docs" / "app" / "photo.png"
CHROMIUM = os.environ.get("PULSE_JAX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCAL = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pulse-jax app`` in a subprocess: yields (url, work folder); stops it with SIGTERM
    and checks that it removed its request folders."""
    port, work = free_port(), tmp_path_factory.mktemp("app-work")
    env = {**os.environ, **LOCAL, "TQDM_DISABLE": "1"}
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's
    log = open(work.parent / "app-server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulse_jax.cli", "app", f"--port={port}", "--steps=5",
         "--restarts=2", "--upscale=2", f"--work_dir={work}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"pulse-jax app exited ({proc.returncode}): "
                        f"{(work.parent / 'app-server.log').read_text()[-2000:]}")
        try:
            if get(url) == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail("pulse-jax app did not serve its page within 120 s")
        time.sleep(0.5)
    yield url, work
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log.close()
    assert not (work / "requests").exists() or not any((work / "requests").iterdir())


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: the browser tests need Debian's chromium "
                    "(apt-get install -y --no-install-recommends chromium, as .ci/run does) "
                    "or PULSE_JAX_CHROMIUM=/path/to/chromium")
    from playwright.sync_api import sync_playwright
    import tempfile
    profile = tempfile.mkdtemp(prefix="pulse-jax-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 1000})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def client(url: str):
    from gradio_client import Client
    return Client(url, verbose=False)


def upload(page, path) -> None:
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.get_by_text(pathlib.Path(path).name).first.wait_for()


def output_size(page, previous: str = "") -> tuple[int, int]:
    """Waits for an output image other than ``previous`` (its src) and returns its size."""
    img = page.locator("#output img")
    page.wait_for_function(
        "prev => { const i = document.querySelector('#output img');"
        " return i && i.complete && i.naturalWidth > 0 && i.src !== prev; }",
        arg=previous, timeout=120_000)
    return tuple(img.evaluate("i => [i.naturalWidth, i.naturalHeight]"))


def test_api_with_only_an_image_returns_an_image(server):
    from gradio_client import handle_file
    url, _ = server
    result = client(url).predict(handle_file(str(FACE)), api_name="/upsample")
    assert Image.open(result[0]).size == (64, 64)
    assert "tiny face" in result[1]


def test_a_photo_in_the_browser(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    upload(page, PHOTO)
    page.locator("#run").click()
    assert output_size(page) == (480, 320)   # upscale 2 of 240x160
    faces = page.locator("#faces")
    page.get_by_text("photo_1: variability").first.wait_for()
    text = faces.inner_text()
    for name in ("photo_0", "photo_1"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{name}: LR"))
        assert "r0 l2" in line and "r1 l2" in line, line   # every restart, with its l2
    assert page.locator("#faces button[aria-label='Thumbnail 4 of 4']").count()  # 2 faces x 2
    assert "taken as a photo" in page.locator("#message").inner_text()
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 2000, "the screenshot looks blank"
    page.close()


def test_a_bad_file_shows_its_message_and_the_page_goes_on(server, browser, tmp_path):
    url, _ = server
    bad = tmp_path / "holiday.png"
    bad.write_text("this is a text file, not a PNG")
    page = browser.new_page()
    page.goto(url)
    upload(page, bad)
    page.locator("#run").click()
    page.get_by_text("holiday.png: not an image").first.wait_for(timeout=60_000)
    upload(page, FACE)
    page.locator("#run").click()
    assert output_size(page) == (64, 64)
    page.close()


def test_two_requests_at_once_wait_their_turn_and_are_both_answered(server):
    """The second request waits in the queue with its place while the first runs (one
    search at a time), the first reports its step and best l2, and both are answered."""
    from gradio_client import handle_file
    from gradio_client.utils import Status
    url, _ = server
    c = client(url)
    # A longer first search (150 steps: a second or two on the CPU after its compile),
    # so that the second request arrives while it runs.
    first = c.submit(handle_file(str(FACE)), steps=150, seed=0, api_name="/upsample")
    deadline, progress = time.time() + 120, ""
    while not progress and time.time() < deadline and not first.done():
        units = first.status().progress_data or []
        progress = next((u.desc for u in units if u.desc and "best l2" in u.desc), "")
        time.sleep(0.05)
    assert progress.startswith("step "), progress   # e.g. "step 20/150, best l2 0.01"
    second = c.submit(handle_file(str(FACE)), seed=1, api_name="/upsample")
    waiting = None
    while not second.done() and time.time() < deadline:
        st = second.status()
        if st.code == Status.IN_QUEUE and st.rank is not None:
            waiting = (st.rank, st.queue_size, first.done())
            break
        time.sleep(0.02)
    assert waiting is not None, "the second request was never seen waiting in the queue"
    rank, size, first_done = waiting
    assert rank == 0 and size >= 1 and not first_done, waiting   # first in line, behind the first
    results = [first.result(timeout=180), second.result(timeout=180)]
    assert [Image.open(r[0]).size for r in results] == [(64, 64), (64, 64)]
    assert "150 steps" in results[0][1] and "5 steps" in results[1][1]


def test_a_bomb_and_a_text_file_through_the_api(server, tmp_path):
    from gradio_client import handle_file
    url, _ = server
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10000, 10000)).save(bomb)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    c = client(url)
    for path, expected in ((bomb, "million pixels"), (text, "not an image")):
        with pytest.raises(Exception, match=expected):
            c.predict(handle_file(str(path)), api_name="/upsample")
    assert get(url) == 200   # still serving


def test_nothing_outside_the_work_folder_is_served(server):
    url, work = server
    for path in ("/etc/passwd", str(ROOT / "setup.cfg"), str(work.parent / "app-server.log")):
        assert get(f"{url}gradio_api/file={path}") == 403, path
