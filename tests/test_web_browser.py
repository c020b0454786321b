"""`artemis web --demo` in a real browser: the suite starts the server on a free loopback port and drives
the page with Playwright through the system's Chromium (Debian package `chromium`; `.ci/run` installs
it), headless.

Upload a generated video and play it, move the slider, drag a box (confirmed at once in video pixels),
ask: the answer grows in the conversation and must equal `Referrer.ask` on the same video, frame and
box; the track plays back; follow-ups with and without <bbox> continue the conversation; a second key
box corrects the track; a folder of frames is uploaded, played and answered as `ask` answers the folder;
a phone reaches the question and Ask before the editor; a foreign Host and another page's upload are
refused; a text file shows its error and the page still answers.
ARTEMIS_WEB_SCREENSHOT=PATH / ARTEMIS_WEB_PHONE_SCREENSHOT=PATH keep screenshots of the answered page
at 1400 px and at a phone's 390 px (docs/web.png and docs/web-phone.png are those).
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
LATE = 12  # the frame of the correcting key box
TIMEOUT_MS = 120_000


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
def browser(server):
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, server):
    tab = browser.new_page(viewport={"width": 1400, "height": 1100})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(server.url)
    return tab


# -- driving the page ---------------------------------------------------------------------------------
def upload(page, path: Path) -> None:
    clear = page.locator("#video-input button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
        page.locator("#video-input input[type=file]").wait_for(state="attached")
    page.locator("#video-input input[type=file]").set_input_files(str(path))


def wait_text(page, selector: str, pattern: str) -> str:
    page.wait_for_function("([sel, pat]) => { const el = document.querySelector(sel);"
                           " return el !== null && new RegExp(pat).test(el.innerText || el.value || ''); }",
                           arg=[selector, pattern])
    return page.locator(selector).inner_text()


def pick_frame(page, frame: int, last: int) -> None:
    number = page.locator("#frame-slider input[type=number]")
    number.fill(str(frame))
    number.press("Enter")
    wait_text(page, "#frame-label", f"^frame {frame} of 0-{last} ")


def settled_box(locator, timeout_s: float = 10.0) -> dict:
    """The element's bounding box once it stopped changing (the editor lays its canvas out again after a new
    frame or a window resize; on a loaded machine a drag measured before that lands off the target)."""
    deadline = time.monotonic() + timeout_s
    last, same = None, 0
    while time.monotonic() < deadline:
        current = locator.bounding_box()
        same = same + 1 if current is not None and current == last else 0
        if same >= 2:
            return current
        last = current
        time.sleep(0.1)
    raise AssertionError(f"the element kept moving for {timeout_s} s: {last}")


def drag_box(page, box, video_size) -> None:
    """Drag from the box's top-left to its bottom-right corner (video pixels) on the editor's canvas.

    The editor draws the image centred in its canvas, as high as the canvas; so the image's screen
    rectangle, and from it each video pixel's screen position, follow from the canvas's."""
    width, height = video_size
    create = page.locator("#box-editor button[aria-label='Create box']")
    if create.count():  # after a box is drawn the editor switches to its move tool
        create.first.click()
    canvas = settled_box(page.locator("#box-editor canvas").first)
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


def confirmed_box(page, frame: int) -> list[float]:
    """The box the page confirmed for `frame` as soon as it was drawn (video pixels)."""
    text = wait_text(page, "#target-used", f"^box \\[[^\\]]+\\] on frame {frame},")
    return [float(v) for v in re.search(r"box \[([^\]]+)\]", text).group(1).split(",")]


def watch_answer(page) -> None:
    """Record every text the conversation's last answer shows while it grows (window.__answers)."""
    page.evaluate("""() => {
        window.__answers = [];
        const chat = document.querySelector('#chat');
        const seen = () => { const bots = chat.querySelectorAll("[data-testid='bot']");
            const text = bots.length ? bots[bots.length - 1].innerText.trim() : '';
            if (text && window.__answers[window.__answers.length - 1] !== text) window.__answers.push(text); };
        new MutationObserver(seen).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")


def ask(page, question: str | None = None, turns: int | None = None) -> list[str]:
    """Ask (with `question` typed first); wait until the conversation has `turns` answers and the page says
    it answered; returns the texts the last answer showed while it grew."""
    if question is not None:
        page.locator("#question textarea").fill(question)
    watch_answer(page)
    page.locator("#ask").click()
    if turns is not None:
        page.wait_for_function("n => document.querySelectorAll(\"#chat [data-testid='bot']\").length === n", arg=turns)
        wait_text(page, "#status", "^answered in")
    return page.evaluate("() => window.__answers")


def chat_turns(page) -> list[str]:
    return [m.inner_text().strip() for m in page.locator("#chat [data-testid='user'], #chat [data-testid='bot']").all()]


def plays(page, selector: str) -> dict:
    """The <video> of `selector`: whether the browser can play it (loaded, a duration, time moves)."""
    page.wait_for_function("sel => { const v = document.querySelector(sel + ' video');"
                           " return v && v.readyState >= 2 && v.duration > 0; }", arg=selector)
    return page.evaluate("""async sel => { const v = document.querySelector(sel + ' video'); v.muted = true;
        await v.play(); await new Promise(r => setTimeout(r, 400)); v.pause();
        return {duration: v.duration, time: v.currentTime, src: v.currentSrc}; }""", selector)


# -- the tests ----------------------------------------------------------------------------------------
def test_upload_play_draw_ask_streamed_follow_ups_and_a_correction(page, server, demo_referrer, video):
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.referrer import follow_up_question
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION

    path, clip = video
    last = len(clip.frames) - 1
    upload(page, path)
    wait_text(page, "#frame-label", f"^frame 0 of 0-{last} \\({last + 1} frames, 320x180 px\\)")
    played = plays(page, "#player")  # an MPEG-4 part 2 upload: the page made a copy the browser plays
    assert played["duration"] > 0.5 and played["time"] > 0
    pick_frame(page, FRAME, last)
    page.locator("#ask").click()  # no box yet
    assert "no box drawn" in wait_text(page, "#error", "error")
    walker = [round(v) for v in clip.objects["walker"].boxes[FRAME]]
    drag_box(page, walker, clip.size)
    box = confirmed_box(page, FRAME)  # confirmed before anything is asked
    # The editor shows this 320 px video 2x enlarged and rounds to its own pixels: 0.5 video px.
    assert max(abs(a - b) for a, b in zip(box, walker)) <= 0.5, (box, walker)
    assert page.locator("#question textarea").input_value() == DEFAULT_QUESTION

    grown = ask(page, turns=1)
    prepared = demo_referrer.prepare(Target(path, tuple(box), FRAME))
    decoding = DecodingSettings(max_new_tokens=MAX_NEW)
    expected = demo_referrer.ask(prepared, DEFAULT_QUESTION, decoding=decoding)
    assert chat_turns(page) == [DEFAULT_QUESTION, expected.answer]  # the answer artemis ask gives
    assert len(grown) >= 2 and grown[-1] == expected.answer and all(expected.answer.startswith(t) for t in grown)
    assert f"key boxes [{', '.join(f'{v:g}' for v in box)}] on frame {FRAME}, tracker csrt" in server.log_text()
    used = page.locator("#target-used").inner_text()
    assert f"frames fed to the model: {', '.join(map(str, expected.frames_used))}" in used
    assert page.locator("#track-quality").inner_text().startswith("track quality: on target")
    assert plays(page, "#track-video")["duration"] > 0  # the track, played back

    # follow-ups continue the conversation, with or without naming the target again
    follow_up = "Where does it go afterwards?"
    ask(page, follow_up, turns=2)
    history = [(DEFAULT_QUESTION, expected.answer)]
    second = demo_referrer.ask(prepared, follow_up, history=history, decoding=decoding)
    assert chat_turns(page)[2:] == [follow_up, second.answer]
    named = "What colour is the <bbox>?"
    ask(page, named, turns=3)
    asked = follow_up_question(named)
    third = demo_referrer.ask(prepared, asked, history=history + [(follow_up, second.answer)], decoding=decoding)
    assert chat_turns(page)[4:] == [asked, third.answer] and '"the target"' in page.locator("#status").inner_text()
    shot = server.root / "web.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ARTEMIS_WEB_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ARTEMIS_WEB_SCREENSHOT"])

    # a correction: a key box on a later frame, then Ask: a new conversation, tracked from both boxes
    pick_frame(page, LATE, last)
    late = [round(v) for v in clip.objects["walker"].boxes[LATE]]
    drag_box(page, late, clip.size)
    late_box = confirmed_box(page, LATE)
    page.locator("#add-key").click()
    keys = wait_text(page, "#keys", f"frame {LATE}, box")
    items = page.locator("#keys li").all_inner_texts()
    assert items == [f"frame {FRAME}, box [{', '.join(f'{v:g}' for v in box)}]",
                     f"frame {LATE}, box [{', '.join(f'{v:g}' for v in late_box)}]"], items
    ask(page, "", turns=1)
    keys = wait_text(page, "#keys", "governs frames")
    assert keys.count("governs frames") == 2
    both = Target(path, tuple(box), FRAME, ((LATE, tuple(late_box)),))
    corrected = demo_referrer.ask(demo_referrer.prepare(both), DEFAULT_QUESTION, decoding=decoding)
    assert chat_turns(page) == [DEFAULT_QUESTION, corrected.answer]
    assert "2 key box(es)" in page.locator("#track-quality").inner_text()

    # New target clears the conversation, the key boxes and the box; keeps the video and the frame
    page.locator("#new-target").click()
    wait_text(page, "#target-used", "^drag a box")
    assert chat_turns(page) == [] and page.locator("#keys").inner_text().strip() == ""
    assert page.locator("#question textarea").input_value() == DEFAULT_QUESTION


def test_a_phone_reaches_the_question_and_ask_before_the_editor(browser, server, video):
    path, clip = video
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.set_default_timeout(TIMEOUT_MS)
    phone.goto(server.url)
    accept = phone.locator("#video-input input[type=file]").get_attribute("accept") or ""
    assert ".mp4" in accept and ".avi" in accept and "*" not in accept  # the picker offers video files only
    upload(phone, path)
    wait_text(phone, "#frame-label", "^frame 0 of ")
    question, ask_button = phone.locator("#question").bounding_box(), phone.locator("#ask").bounding_box()
    editor = phone.locator("#box-editor").bounding_box()
    assert ask_button["y"] - (question["y"] + question["height"]) < 60  # Ask right under the question
    assert ask_button["y"] + ask_button["height"] <= editor["y"]  # both before the editor
    for selector in ("#frame-label", "#target-used", "#model-name"):  # nothing cut off at 390 px
        cut = phone.evaluate("sel => { const el = document.querySelector(sel);"
                             " return el.scrollWidth - el.clientWidth; }", selector)
        assert cut <= 1, (selector, cut)
    shot = server.root / "web-phone.png"
    phone.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ARTEMIS_WEB_PHONE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ARTEMIS_WEB_PHONE_SCREENSHOT"])
    phone.close()


def test_a_folder_of_frames_uploads_plays_and_is_answered_as_ask_on_that_folder(browser, server, demo_referrer, video,
                                                                                tmp_path):
    from PIL import Image

    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION

    _, clip = video
    picked = tmp_path / "walker_frames"  # what the person picks: the frames and a stray note
    frames = tmp_path / "frames"  # the same images as `artemis ask frames/` reads them (the page names it so)
    for folder in (picked, frames):
        folder.mkdir()
        for index, image in enumerate(clip.frames):
            Image.fromarray(image).save(folder / f"{index:03d}.png")
    (picked / "notes.txt").write_text("not a frame")
    tab = browser.new_page(viewport={"width": 1400, "height": 1100})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(server.url)
    picker = tab.locator("#frames-input input[type=file]")
    assert picker.get_attribute("webkitdirectory") is not None  # the picker chooses a folder
    assert ".png" in (picker.get_attribute("accept") or "") and ".mp4" not in (picker.get_attribute("accept") or "")
    picker.set_input_files(str(picked))
    last = len(clip.frames) - 1
    wait_text(tab, "#frame-label", f"^frame 0 of 0-{last} \\({last + 1} frames, 320x180 px\\)")
    assert plays(tab, "#player")["duration"] > 0.5  # an H.264 copy made from the images
    walker = [round(v) for v in clip.objects["walker"].boxes[0]]
    drag_box(tab, walker, clip.size)
    box = confirmed_box(tab, 0)
    ask(tab, turns=1)
    expected = demo_referrer.ask(demo_referrer.prepare(Target(frames, tuple(box), 0)), DEFAULT_QUESTION,
                                 decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert chat_turns(tab) == [DEFAULT_QUESTION, expected.answer]
    assert tab.locator("#track-quality").inner_text().startswith("track quality: on target")
    tab.close()


def test_a_foreign_host_and_other_pages_are_refused(server, video):
    import httpx

    path, _ = video
    with httpx.Client(timeout=30) as client:
        assert client.get(server.url).status_code == 200
        assert client.get(server.url, headers={"host": "evil.example"}).status_code == 403
        refused = client.post(server.url + "gradio_api/upload", headers={"origin": "https://evil.example"},
                              files={"files": ("refused.mp4", path.read_bytes())})
        assert refused.status_code == 403 and "cross-origin" in refused.text
    assert not list((server.root / "tmp").glob("artemis-web-*/gradio/*/refused.mp4"))  # nothing was stored


def test_text_file_shows_the_error_and_the_page_still_answers(page, server, demo_referrer, video, tmp_path):
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION

    page.locator("#new-target").click()
    clear = page.locator("#video-input button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    # the picker offers video files only; a script (or a browser that ignores "accept") gets the same answer
    page.locator("#video-input input[type=file]").evaluate("input => input.removeAttribute('accept')")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n")
    page.locator("#video-input input[type=file]").set_input_files(str(notes))
    wait_text(page, "body", "Invalid file type: notes.txt")
    page.reload()  # (the file box stays in its error state)
    # a video's name on something that is not one: the page's own error, and it still answers afterwards
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video either\n")
    upload(page, fake)
    error = wait_text(page, "#error", "fake.mp4")
    assert "error: fake.mp4: cannot decode the video" in error and "hint: check the file plays" in error
    assert "Traceback" not in error and str(tmp_path) not in error

    # a narrow window: the editor now shows the (2x enlarged) frame smaller than the video itself
    page.set_viewport_size({"width": 560, "height": 1400})
    path, clip = video
    upload(page, path)
    wait_text(page, "#frame-label", "^frame 0 of ")
    assert page.locator("#error").inner_text().strip() == ""
    canvas = page.locator("#box-editor canvas").first.bounding_box()
    assert canvas["width"] < clip.size[0] * 2  # the box editor scaled the image down
    leaver = [round(v) for v in clip.objects["leaver"].boxes[0]]
    drag_box(page, leaver, clip.size)
    box = confirmed_box(page, 0)
    # one screen pixel is now more than one video pixel: the box is good to that
    assert max(abs(a - b) for a, b in zip(box, leaver)) <= clip.size[0] / canvas["width"], (box, leaver)
    ask(page, turns=1)
    expected = demo_referrer.ask(demo_referrer.prepare(Target(path, tuple(box), 0)), DEFAULT_QUESTION,
                                 decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert chat_turns(page) == [DEFAULT_QUESTION, expected.answer]


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
