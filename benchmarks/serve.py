"""Load test of `artemis serve`: concurrent `openai`-client workers plus a stream of bad requests.

    python benchmarks/serve.py --out benchmarks/results/serve_cpu.json        # tiny model, CPU, 32 x 8
    python benchmarks/serve.py --workers 8 --requests 4 --sequential 8       # a quick run

Starts `python -m artemis_cli serve` on a free loopback port with the tiny random Artemis (Llama
hidden 64, the tiny CLIP tower, RoI module with `--roi-fuse` fuse rounds, as the test suite builds it)
and a generated 12-frame video, warms the track/feature caches (one request per target), then:
- `--requests` rounds; in each, `--workers` threads with their own `openai.OpenAI` client (no retries)
  send one good request each at once (two targets x two questions, greedy, `--max-tokens`), then
  `--sequential / --requests` good requests of the same kinds go one at a time; all along, one more
  thread sends a bad request every `--bad-every-ms` (no <bbox>, box outside the frame, unknown model,
  bad JSON, missing video, a path outside --allow-path, an unknown field) and checks each gets its 4xx.
  Alternating the two keeps a shared machine's changing load from favouring either.
Reports requests/s, p50/p99 latency, failed good requests, bad requests answered with the wrong status,
the batch sizes the server formed, and the batched/sequential requests-per-second ratio (goal >= 3).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ("What is the <bbox> doing in this video?", "Where does the <bbox> go?")


def start_server(args: list[str], timeout: float = 300) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "artemis_cli", "serve", "--port", "0", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ARTEMIS_API_KEY": ""})
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def drain():
        for line in proc.stderr:
            lines.append(line)
            match = re.search(r"serving (http://\S+)", line)
            if match:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(timeout) or not found:
        proc.kill()
        raise SystemExit("server did not start:\n" + "".join(lines))
    return proc, found[0], lines


def good_body(video: Path, box, question: str, max_tokens: int) -> dict:
    return {"model": "artemis", "max_tokens": max_tokens, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": video.resolve().as_uri()}}, {"type": "text", "text": question}]}],
        "box": [float(v) for v in box], "frame": 0}


def bad_requests(video: Path, box, outside: Path):
    """(name, expected status, JSON body or raw bytes) for each kind of bad request."""
    good = good_body(video, box, QUESTIONS[0], 4)
    return [
        ("no <bbox>", 400, {**good, "messages": [{"role": "user", "content": [
            good["messages"][0]["content"][0], {"type": "text", "text": "What is it doing?"}]}]}),
        ("box outside the frame", 400, {**good, "box": [0.0, 0.0, 5000.0, 50.0]}),
        ("unknown model", 404, {**good, "model": "gpt-4o"}),
        ("bad JSON", 400, b'{"model": "artemis", "messages": ['),
        ("missing video", 400, {**good, "messages": [{"role": "user", "content": QUESTIONS[0]}]}),
        ("path outside --allow-path", 403, {**good, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": outside.resolve().as_uri()}},
            {"type": "text", "text": QUESTIONS[0]}]}]}),
        ("unknown field", 400, {**good, "temperatur": 0.2}),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=8, help="good requests per worker (= rounds)")
    parser.add_argument("--sequential", type=int, default=16, help="good requests sent one at a time (spread over "
                                                                   "the rounds, at least one per round)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=20)
    parser.add_argument("--bad-every-ms", type=float, default=100)
    parser.add_argument("--roi-fuse", type=int, default=1, help="tiny model's RoI fuse rounds (tests: 1; published: 5)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    import httpx
    import openai

    from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video
    from artemis_cli.model.loading import save_model
    from artemis_cli.model.tiny import build_tiny_artemis, save_tiny_clip, save_tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, tokenizer, _ = build_tiny_artemis(save_tiny_tokenizer(tmp / "tok"), save_tiny_clip(tmp / "clip"),
                                                 roi_num_fuse=args.roi_fuse)
        checkpoint = save_model(model, tokenizer, tmp / "artemis")
        del model
        tracking = make_tracking_video(seed=0, n_frames=12)
        video = save_video(tracking, tmp / "videos" / "clip.mp4")
        outside = save_video(tracking, tmp / "elsewhere" / "clip.mp4")
        targets = [obj.boxes[0] for obj in tracking.objects.values()]
        kinds = [(box, question) for box in targets for question in QUESTIONS]
        started = time.perf_counter()
        proc, url, lines = start_server(["--model", str(checkpoint), "--allow-path", str(video.parent), "--cache-dir",
                                         str(tmp / "cache"), "--device", "cpu", "--max-batch", str(args.max_batch),
                                         "--batch-wait-ms", str(args.batch_wait_ms)])
        startup_s = time.perf_counter() - started
        base = url.removesuffix("/v1")

        def ask(client, box, question):
            start = time.perf_counter()
            body = good_body(video, box, question, args.max_tokens)
            target = {"box": body.pop("box"), "frame": body.pop("frame")}
            response = client.chat.completions.create(**body, extra_body=target)
            assert response.choices[0].message.content is not None
            return time.perf_counter() - start, response.model_extra["artemis"]["batch_size"]

        try:
            client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
            started = time.perf_counter()
            for box in targets:  # tracks and clip features into the caches, as `ask` would on a first question
                ask(client, box, QUESTIONS[0])
            warm_s = time.perf_counter() - started

            bad = bad_requests(video, targets[0], outside)
            bad_results: list[tuple[str, int, int]] = []
            stop = threading.Event()

            def bad_stream():
                with httpx.Client(base_url=url, timeout=120) as http:
                    for name, expected, body in itertools.cycle(bad):
                        if stop.is_set():
                            return
                        if isinstance(body, bytes):
                            got = http.post("/chat/completions", content=body).status_code
                        else:
                            got = http.post("/chat/completions", json=body).status_code
                        bad_results.append((name, expected, got))
                        stop.wait(args.bad_every_ms / 1000)

            failures: list[str] = []
            latencies: list[float] = []
            sizes: list[int] = []

            def worker(index: int, round_: int):
                own = clients[index]
                box, question = kinds[(index + round_) % len(kinds)]
                try:
                    seconds, size = ask(own, box, question)
                    latencies.append(seconds)
                    sizes.append(size)
                except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                    failures.append(f"{type(exc).__name__}: {exc}")

            # Rounds alternate a concurrent burst (one request per worker) with a few requests sent one at a
            # time, so a change in the machine's load hits both alike (the box is shared); ratios per round.
            clients = [openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=900)
                       for _ in range(args.workers)]
            per_round = max(1, args.sequential // args.requests)
            bad_thread = threading.Thread(target=bad_stream, daemon=True)
            bad_thread.start()
            load_s, sequential_s, sequential, ratios = 0.0, 0.0, [], []
            for round_ in range(args.requests):
                started = time.perf_counter()
                with ThreadPoolExecutor(args.workers) as pool:
                    list(pool.map(lambda index: worker(index, round_), range(args.workers)))
                burst = time.perf_counter() - started
                started = time.perf_counter()
                for k in range(per_round):
                    seconds, _ = ask(client, *kinds[(round_ + k) % len(kinds)])
                    sequential.append(seconds)
                alone = time.perf_counter() - started
                load_s += burst
                sequential_s += alone
                ratios.append((args.workers / burst) / (per_round / alone))
                print(f"round {round_ + 1}/{args.requests}: {args.workers} concurrent in {burst:.1f} s, "
                      f"{per_round} alone in {alone:.1f} s: ratio {ratios[-1]:.2f}", file=sys.stderr, flush=True)
            stop.set()
            bad_thread.join(120)
            health = httpx.get(f"{base}/health", timeout=30).json()
        finally:
            proc.terminate()
            code = proc.wait(120)

    good = args.workers * args.requests
    wrong = [r for r in bad_results if r[1] != r[2]]
    batched_rps = len(latencies) / load_s
    sequential_rps = len(sequential) / sequential_s
    summary = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "model": f"tiny random Artemis (RoI fuse {args.roi_fuse})",
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "startup_s": round(startup_s, 2), "warm_up_s": round(warm_s, 2),
        "load": {"good_sent": good, "answered": len(latencies), "failed": len(failures), "failures": failures[:10],
                 "seconds": round(load_s, 2), "requests_per_s": round(batched_rps, 3),
                 "p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
                 "p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
                 "mean_batch": round(statistics.mean(sizes), 2) if sizes else None, "largest_batch": max(sizes, default=0)},
        "bad": {"sent": len(bad_results), "wrong_status": len(wrong), "wrong": wrong[:10],
                "kinds": sorted({(name, expected) for name, expected, _ in bad_results})},
        "sequential": {"requests": len(sequential), "seconds": round(sequential_s, 2),
                       "requests_per_s": round(sequential_rps, 3), "p50_s": round(percentile(sequential, 0.5), 3)},
        "batched_over_sequential": round(batched_rps / sequential_rps, 2),
        "batched_over_sequential_per_round": [round(r, 2) for r in ratios],
        "batched_over_sequential_median": round(statistics.median(ratios), 2),
        "server_batches": health["batches"], "server_exit_code": code,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
