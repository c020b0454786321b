"""`artemis web --demo` in a real browser: the suite starts the server on a free loopback port and drives
the page with Playwright through the system's Chromium (Debian package `chromium`; `.ci/run` installs
it), headless.

Upload a generated video, move the slider, drag a box on the frame, ask: the answer must equal
`Referrer.ask` on the same video, frame and box, and the box the backend received (the page's
"frame N, box [...]" line and the server log) must be the dragged one in video pixels. A follow-up
keeps the conversation, New target clears it, a text file shows its error and the page still answers.
Set ARTEMIS_WEB_SCREENSHOT=PATH to keep a screenshot of the answered page (docs/web.png is one).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio_image_annotation")
CHROMIUM = os.environ.get("ARTEMIS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)", allow_module_level=True)

MAX_NEW = 24  # the server's --max-new-tokens: the page's default answer length
FRAME = 3  # the key frame the test picks with the slider
TIMEOUT_MS = 120_000
USED = re.compile(r"frame (\d+), box \[([^\]]+)\] in video pixels.*?frames used: ([\d, ]+)")


@dataclass
class Server:
    url: str
    root: Path
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_server")
    (root / "tmp").mkdir()
    port = _free_port()
    env = {**os.environ, "ARTEMIS_CACHE": str(root / "cache"), "TMPDIR": str(root / "tmp"), "OMP_NUM_THREADS": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ARTEMIS_WEB_AUTH", None)
    log = root / "server.log"
    with open(log, "w") as out:
        # started with SIGINT ignored, as under `nohup ... &` or some CI runners, whatever launched pytest:
        # Ctrl-C must still stop it (the test at the end)
        process = subprocess.Popen([sys.executable, "-m", "artemis_cli", "web", "--demo", "--port", str(port),
                                    "--max-new-tokens", str(MAX_NEW), "--device", "cpu"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    server = Server(f"http://127.0.0.1:{port}/", root, log, process)
    deadline = time.monotonic() + 240
    while "web: serving" not in server.log_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"artemis web --demo did not start (exit {process.poll()}):\n{server.log_text()[-3000:]}")
        time.sleep(0.5)
    yield server
    if process.poll() is None:
        process.kill()
        process.wait(30)


@pytest.fixture(scope="module")
def demo_referrer(server):
    """The Referrer `artemis ask` would build on the demo model, in this process, with its own caches."""
    import torch

    from artemis_cli.ownvideo.referrer import Referrer
    from artemis_cli.web.demo_assets import ensure_demo_assets

    assets = ensure_demo_assets(server.root / "cache" / "web-demo")  # built by the server: only read here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the server runs on one thread: the same float sums, the same greedy tokens
    yield Referrer(str(assets.model), image_tower=str(assets.clip), device="cpu", cache_dir=server.root / "ref-cache")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video

    clip = make_tracking_video(seed=5, n_frames=16, width=320, height=180)
    return save_video(clip, tmp_path_factory.mktemp("upload") / "walker.mp4"), clip


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        tab = browser.new_page(viewport={"width": 1400, "height": 1100})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(server.url)
        yield tab
        browser.close()


# -- driving the page ---------------------------------------------------------------------------------
def upload(page, path: Path) -> None:
    clear = page.locator("#video-input button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#video-input input[type=file]").set_input_files(str(path))


def wait_text(page, selector: str, pattern: str) -> str:
    page.wait_for_function("([sel, pat]) => { const el = document.querySelector(sel);"
                           " return el !== null && new RegExp(pat).test(el.innerText || el.value || ''); }",
                           arg=[selector, pattern])
    return page.locator(selector).inner_text()


def pick_frame(page, frame: int, last: int) -> None:
    wait_text(page, "#target-used", f"^frame 0 of {last} ")
    number = page.locator("#frame-slider input[type=number]")
    number.fill(str(frame))
    number.press("Enter")
    wait_text(page, "#target-used", f"^frame {frame} of {last} ")


def drag_box(page, box, video_size) -> None:
    """Drag from the box's top-left to its bottom-right corner (video pixels) on the editor's canvas.

    The editor draws the image centred in its canvas, as high as the canvas; so the image's screen
    rectangle, and from it each video pixel's screen position, follow from the canvas's."""
    width, height = video_size
    canvas = page.locator("#box-editor canvas").first.bounding_box()
    shown_width = canvas["height"] * width / height
    left = canvas["x"] + (canvas["width"] - shown_width) / 2
    per_pixel = shown_width / width
    x1, y1, x2, y2 = (left + box[0] * per_pixel, canvas["y"] + box[1] * per_pixel,
                      left + box[2] * per_pixel, canvas["y"] + box[3] * per_pixel)
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move((x1 + x2) / 2, (y1 + y2) / 2, steps=4)
    page.mouse.move(x2, y2, steps=4)
    page.mouse.up()


def ask(page, question: str | None = None) -> None:
    if question is not None:
        page.locator("#question textarea").fill(question)
    page.locator("#ask").click()


def answer_text(page) -> str:
    return page.locator("#answer textarea").input_value()


def used(page) -> tuple[int, list[float], list[int]]:
    match = USED.search(page.locator("#target-used").inner_text())
    assert match, page.locator("#target-used").inner_text()
    return (int(match.group(1)), [float(v) for v in match.group(2).split(",")],
            [int(v) for v in match.group(3).split(",")])


def chat_turns(page) -> list[str]:
    return [m.inner_text().strip() for m in page.locator("#chat [data-testid='user'], #chat [data-testid='bot']").all()]


# -- the tests ----------------------------------------------------------------------------------------
def test_answer_equals_referrer_ask_on_the_dragged_box_in_video_pixels(page, server, demo_referrer, video):
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Target

    path, clip = video
    upload(page, path)
    pick_frame(page, FRAME, len(clip.frames) - 1)
    ask(page)  # no box yet
    assert "no box drawn" in wait_text(page, "#error", "error")
    walker = [round(v) for v in clip.objects["walker"].boxes[FRAME]]
    drag_box(page, walker, clip.size)
    assert page.locator("#question textarea").input_value() == DEFAULT_QUESTION
    ask(page)
    wait_text(page, "#target-used", f"^frame {FRAME}, box ")
    frame, box, frames_used = used(page)
    # The editor shows this 320 px video 2x enlarged and rounds to its own pixels: 0.5 video px.
    assert frame == FRAME and max(abs(a - b) for a, b in zip(box, walker)) <= 0.5, (box, walker)
    assert f"web: target walker.mp4: frame {FRAME}, box [{', '.join(f'{v:g}' for v in box)}], tracker csrt" \
        in server.log_text()  # what the backend received
    assert page.locator("#error").inner_text().strip() == ""

    prepared = demo_referrer.prepare(Target(path, tuple(box), FRAME))
    expected = demo_referrer.ask(prepared, DEFAULT_QUESTION, decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert expected.answer and answer_text(page) == expected.answer
    assert frames_used == expected.frames_used and frames_used[0] == FRAME
    assert chat_turns(page) == [DEFAULT_QUESTION, expected.answer]
    captions = page.locator("#track-preview").inner_text()
    assert f"frame {FRAME} (key)" in captions and page.locator("#track-preview img").count() == len(set(frames_used))

    # a follow-up keeps the conversation: the model sees the first turn
    follow_up = "Where does it go afterwards?"
    ask(page, follow_up)
    page.wait_for_function("() => document.querySelectorAll(\"#chat [data-testid='bot']\").length === 2")
    second = demo_referrer.ask(prepared, follow_up, history=[(DEFAULT_QUESTION, expected.answer)],
                               decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert chat_turns(page) == [DEFAULT_QUESTION, expected.answer, follow_up, second.answer]
    assert answer_text(page) == second.answer
    shot = server.root / "web.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ARTEMIS_WEB_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ARTEMIS_WEB_SCREENSHOT"])

    # New target clears the conversation and the box, keeps the video and the frame
    page.locator("#new-target").click()
    wait_text(page, "#target-used", f"^frame {FRAME} of ")
    assert chat_turns(page) == [] and answer_text(page) == ""
    assert page.locator("#question textarea").input_value() == DEFAULT_QUESTION


def test_text_file_shows_the_error_and_the_page_still_answers(page, server, demo_referrer, video, tmp_path):
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Target

    # the examples are the demo's videos: picking one loads it like an upload
    page.locator("#video-input button[aria-label='Clear']").click()
    page.get_by_text("walker_and_leaver_320x180.mp4").click()
    wait_text(page, "#target-used", "^frame 0 of 47 \\(320x180\\)")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n")
    upload(page, notes)
    error = wait_text(page, "#error", "not a video")
    assert "error: notes.txt is not a video that can be decoded" in error and "Traceback" not in error
    assert "hint: upload an .mp4" in error

    # a narrow window: the editor now shows the (2x enlarged) frame smaller than the video itself
    page.set_viewport_size({"width": 560, "height": 1400})
    path, clip = video
    upload(page, path)
    wait_text(page, "#target-used", "^frame 0 of ")
    assert page.locator("#error").inner_text().strip() == ""
    canvas = page.locator("#box-editor canvas").first.bounding_box()
    assert canvas["width"] < clip.size[0] * 2  # the box editor scaled the image down
    leaver = [round(v) for v in clip.objects["leaver"].boxes[0]]
    drag_box(page, leaver, clip.size)
    ask(page)
    wait_text(page, "#target-used", "^frame 0, box ")
    frame, box, _ = used(page)
    # one screen pixel is now more than one video pixel: the box is good to that
    assert frame == 0 and max(abs(a - b) for a, b in zip(box, leaver)) <= clip.size[0] / canvas["width"], (box, leaver)
    expected = demo_referrer.ask(demo_referrer.prepare(Target(path, tuple(box), 0)), DEFAULT_QUESTION,
                                 decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert answer_text(page) == expected.answer


def test_closing_the_tab_removes_its_files_and_ctrl_c_the_rest(page, server):
    roots = list((server.root / "tmp").glob("artemis-web-*"))
    assert len(roots) == 1 and list(roots[0].glob("session-*/upload-*/walker.mp4")), "uploads live in the session"
    page.close()  # gradio's unload event: the session's folder goes at once
    deadline = time.monotonic() + 60
    while list(roots[0].glob("session-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(roots[0].glob("session-*"))
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(60) == 130
    log = server.log_text()
    assert "interrupted: the server stopped" in log and "rerun" not in log
    assert "Closing server" not in log  # gradio's own line is not printed
    assert not list((server.root / "tmp").glob("artemis-web-*"))  # gradio's upload cache with it
