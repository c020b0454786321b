"""How long `artemis web --demo` takes to try: start-up (first use builds the demo model and videos;
later starts reuse them), then in headless Chromium one upload, one Ask on a new target (decode, track,
features, answer) and one follow-up (the answer only).

    python benchmarks/web.py                 # a fresh cache: cold start, then a warm start and the page timings
    python benchmarks/web.py --runs 3        # the page timings three times (median reported)

Needs Chromium (`/usr/bin/chromium`, or --chromium PATH) and Playwright. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cache: Path, max_new_tokens: int) -> tuple[subprocess.Popen, str, float, Path]:
    port = free_port()
    log = cache / f"server-{port}.log"
    env = {**os.environ, "ARTEMIS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    began = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "artemis_cli", "web", "--demo", "--port", str(port),
                                    "--max-new-tokens", str(max_new_tokens), "--device", "cpu"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    while "web: serving" not in log.read_text():
        if process.poll() is not None:
            raise SystemExit(f"the server stopped:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/", time.perf_counter() - began, log


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


def drive(page, url: str, video: Path, box, size) -> dict:
    """One session: load, upload, drag `box` (video px) on frame 0, ask, ask a follow-up; seconds each."""
    times = {}
    began = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#video-input input[type=file]", state="attached")
    times["page_load"] = time.perf_counter() - began
    began = time.perf_counter()
    page.locator("#video-input input[type=file]").set_input_files(str(video))
    page.wait_for_function("() => (document.querySelector('#target-used').innerText || '').startsWith('frame 0 of')")
    times["upload_to_frame"] = time.perf_counter() - began
    canvas = page.locator("#box-editor canvas").first.bounding_box()
    width, height = size
    shown = canvas["height"] * width / height
    left, k = canvas["x"] + (canvas["width"] - shown) / 2, shown / width
    page.mouse.move(left + box[0] * k, canvas["y"] + box[1] * k)
    page.mouse.down()
    page.mouse.move(left + box[2] * k, canvas["y"] + box[3] * k, steps=6)
    page.mouse.up()
    for name, question in (("ask_new_target", None), ("ask_follow_up", "What does it do next?")):
        if question:
            page.locator("#question textarea").fill(question)
        turns = page.locator("#chat [data-testid='bot']").count()
        began = time.perf_counter()
        page.locator("#ask").click()
        page.wait_for_function(f"() => document.querySelectorAll(\"#chat [data-testid='bot']\").length > {turns}")
        times[name] = time.perf_counter() - began
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from artemis_cli.data.synthetic_tracking import make_tracking_video

    with tempfile.TemporaryDirectory(prefix="artemis-web-bench-") as tmp:
        cache = Path(tmp)
        process, _, cold, _ = start(cache, args.max_new_tokens)
        stop(process)
        process, url, warm, log = start(cache, args.max_new_tokens)
        video = cache / "web-demo" / "videos" / "walker_and_leaver_320x180.mp4"
        clip = make_tracking_video(seed=0, n_frames=48, width=320, height=180)  # the demo video's own boxes
        box = [round(v) for v in clip.objects["walker"].boxes[0]]
        runs = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
                for run in range(args.runs):
                    page = browser.new_page(viewport={"width": 1400, "height": 1100})
                    page.set_default_timeout(300_000)
                    runs.append(drive(page, url, video, box, clip.size))
                    page.close()
                browser.close()
        finally:
            stop(process)
        server_lines = [line for line in log.read_text().splitlines() if line.startswith("web: answered")]
    result = {"cold_start_s": round(cold, 2), "warm_start_s": round(warm, 2), "runs": args.runs,
              "max_new_tokens": args.max_new_tokens, "cpus": os.cpu_count(),
              "load_average": [round(v, 1) for v in os.getloadavg()],
              **{f"{key}_s": round(statistics.median(r[key] for r in runs), 2) for key in runs[0]},
              "server": server_lines}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
