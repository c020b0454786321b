"""Load test of `artemis serve`: concurrent `openai`-client workers plus a stream of bad requests, the
time to the first token, and good requests' latency with hostile clients mixed in.

    python benchmarks/serve.py --out benchmarks/results/serve_cpu.json        # tiny model, CPU, 32 x 8
    python benchmarks/serve.py --workers 8 --requests 4 --sequential 8       # a quick run
    python benchmarks/serve.py --workers 16 --requests 0 --hostile-rounds 6 --out benchmarks/results/serve_hostile_cpu.json

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

Time to first token (`--ttft` samples of each, streamed): the role chunk (first byte) and the first
token, for a target whose track and features are cached, and for a video the server has never seen.

Hostile clients (`--hostile-rounds`): each round sends one concurrent burst of `--workers` good requests
on a clean server, then one with hostile clients at work meanwhile (alternating, so a shared machine's
load hits both alike): the bad requests above plus deep/huge/NaN JSON, 15,000-message bodies, foreign
Hosts, text/plain POSTs, a FIFO, record paths escaping --allow-path, undecodable uploads, a 3,000-frame
video with a new box each time (prepared for real, in the server's preparation thread), a 20,000-frame
video (over the frame limit), 100 half-sent requests and 20 slow uploads held open. Reports good
requests' p50/p99 in each (goal: hostile p99 <= 1.5 x clean p99), every hostile request's status, and
the server's memory (resident set, sampled every 0.2 s) and cache size in each phase.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import platform
import re
import socket
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


def hostile_requests(good: dict, long_video: Path, huge_video: Path, fifo: Path, record_root: Path):
    """(name, expected status, headers, body) for each hostile request (`body` a callable gives a fresh one)."""
    text = json.dumps(good)
    counter = itertools.count()
    url = lambda path: {**good, "messages": [{"role": "user", "content": [  # noqa: E731
        {"type": "video_url", "video_url": {"url": path.resolve().as_uri()}}, good["messages"][0]["content"][1]]}]}
    json_type = {"content-type": "application/json"}
    junk = "data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000)).decode()
    escape = {"model": good["model"], "messages": [{"role": "user", "content": QUESTIONS[0]}], "data_root": str(record_root),
              "record": {"video_name": "x", "caption": "x", "clip_path": "../" * 12 + "etc/passwd", "frame_path": ".",
                         "frame_id": ["a.jpg"], "track_list": [[1, 1, 9, 9]], "key_frame_id": "a.jpg",
                         "key_frame_box": [1, 1, 9, 9]}}
    return [
        ("deep JSON", 400, json_type, lambda: b"[" * 100_000 + b"]" * 100_000),
        ("400-digit number", 400, json_type, lambda: text.replace('"frame": 0', '"frame": ' + "9" * 400).encode()),
        ("NaN", 400, json_type, lambda: text.replace('"frame": 0', '"frame": NaN').encode()),
        ("15,000 messages", 400, json_type, lambda: json.dumps({**good, "messages": [{"role": "user", "content": "x"}]
                                                                * 15_000}, separators=(",", ":")).encode()),
        ("foreign Host", 403, {**json_type, "host": "evil.example"}, lambda: text.encode()),
        ("text/plain POST", 415, {"content-type": "text/plain"}, lambda: text.encode()),
        ("FIFO", 400, json_type, lambda: json.dumps(url(fifo)).encode()),
        ("record escaping --allow-path", 403, json_type, lambda: json.dumps(escape).encode()),
        ("undecodable upload", 400, json_type, lambda: json.dumps({**good, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": junk}}, good["messages"][0]["content"][1]]}]}).encode()),
        ("20,000-frame video", 400, json_type, lambda: json.dumps({**url(huge_video), "box": [4.0, 4.0, 20.0, 20.0]}).encode()),
        # a client that sends a long video and goes away after 3 s: its preparation must stop then
        ("3,000-frame video, new box, client gone after 3 s", ("ReadTimeout", 200, 503), json_type, lambda: json.dumps(
            {**url(long_video), "box": [20.0 + (shift := next(counter) % 40), 10.0, 52.0 + shift, 40.0]}).encode()),
    ]


class Hostile:
    """Hostile clients at work while `active` is set: requests from `hostile_requests` in two threads, and
    half-sent requests / slow uploads held open (reopened as the server closes them)."""

    def __init__(self, url: str, requests: list, half_sent: int = 100, slow_uploads: int = 20):
        self.url, self.requests = url, requests
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        self.address = (host, int(port))
        self.active = threading.Event()
        self.done = threading.Event()
        self.results: list[tuple[str, object, int]] = []
        self.half_sent, self.slow_uploads = half_sent, slow_uploads
        self.threads = [threading.Thread(target=self._send, args=(offset,), daemon=True) for offset in range(2)]
        self.threads.append(threading.Thread(target=self._hold_open, daemon=True))
        for thread in self.threads:
            thread.start()

    def _send(self, offset: int) -> None:
        import httpx

        with httpx.Client(timeout=120) as http:
            for name, expected, headers, body in itertools.islice(itertools.cycle(self.requests), offset, None, 2):
                while not self.active.is_set():
                    if self.done.wait(0.05):
                        return
                try:
                    got = http.post(f"{self.url}/chat/completions", content=body(), headers=headers,
                                    timeout=3 if "client gone" in name else 120).status_code
                except httpx.HTTPError as exc:
                    got = type(exc).__name__
                self.results.append((name, expected, got))

    def _hold_open(self) -> None:
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        held: list[socket.socket] = []
        while not self.done.is_set():
            if not self.active.is_set():
                for sock in held:
                    sock.close()
                held = []
                self.done.wait(0.05)
                continue
            held = [s for s in held if _open(s)]
            while len(held) < self.half_sent + self.slow_uploads:
                try:
                    sock = socket.create_connection(self.address, timeout=5)
                    slow = len(held) % 6 == 0
                    sock.sendall(head + (b"Content-Length: 900000\r\n\r\n{\"model\": \"" if slow else b"X-Half: "))
                    held.append(sock)
                except OSError:
                    break
            self.done.wait(0.2)
        for sock in held:
            sock.close()

    def close(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)


def _open(sock: socket.socket) -> bool:
    """False once the server closed it (a 408 or 503 waiting to be read counts as closed)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        pass
    finally:
        sock.setblocking(True)
    sock.close()
    return False


class Memory:
    """The server's resident memory, sampled every 0.2 s (Linux /proc), tagged by the phase running."""

    def __init__(self, pid: int):
        self.pid, self.phase = pid, "start"
        self.samples: dict[str, list[float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.samples.setdefault(self.phase, []).append(self.rss_mb())

    def peak(self, phase: str) -> float:
        return round(max(self.samples.get(phase, [0.0])), 1)


def time_to_first_token(url: str, video: Path, box, max_tokens: int) -> tuple[float, float]:
    """(seconds to the role chunk, seconds to the first token) of one streamed request."""
    import httpx

    body = {**good_body(video, box, QUESTIONS[0], max_tokens), "stream": True}
    start = time.perf_counter()
    first_byte = first_token = None
    with httpx.Client(timeout=600) as http:
        with http.stream("POST", f"{url}/chat/completions", json=body) as response:
            for line in response.iter_lines():  # read to the end: the answer's last token included
                if first_byte is None and line.startswith("data: "):
                    first_byte = time.perf_counter() - start
                if first_token is None and line.startswith("data: {") and '"content": "' in line and '"role"' not in line:
                    first_token = time.perf_counter() - start
    return first_byte, first_token


def summarise(values: list[float]) -> dict:
    if not values:
        return {}
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3)}


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
    parser.add_argument("--ttft", type=int, default=5, help="time-to-first-token samples (cached / new video); 0: none")
    parser.add_argument("--hostile-rounds", type=int, default=0, help="rounds of (clean burst, burst with hostile "
                                                                       "clients); 0: none")
    parser.add_argument("--burst-requests", type=int, default=4, help="good requests each worker sends in a row "
                                                                       "in a hostile-run burst")
    parser.add_argument("--cache-quota-gb", type=float, default=0.05)
    parser.add_argument("--no-heavy-video", action="store_true", help="leave the 3,000-frame video out of the "
                                                                       "hostile requests (to see what it costs)")
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
        fifo = video.parent / "pipe.mp4"
        os.mkfifo(fifo)
        proc, url, lines = start_server(["--model", str(checkpoint), "--allow-path", str(video.parent), "--cache-dir",
                                         str(tmp / "cache"), "--device", "cpu", "--max-batch", str(args.max_batch),
                                         "--batch-wait-ms", str(args.batch_wait_ms), "--max-request-mb", "4",
                                         "--request-timeout", "10", "--prepare-timeout", "60",
                                         "--cache-quota-gb", str(args.cache_quota_gb)] + ([] if os.environ.get("SERVE_BENCH_LOG") else ["--no-access-log"]))
        memory = Memory(proc.pid)
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
                            got = http.post("/chat/completions", content=body,
                                            headers={"content-type": "application/json"}).status_code
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
            per_round = max(1, args.sequential // max(1, args.requests))
            bad_thread = threading.Thread(target=bad_stream, daemon=True)
            bad_thread.start()
            load_s, sequential_s, sequential, ratios = 0.0, 0.0, [], []
            memory.phase = "load"
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

            memory.phase = "ttft"
            ttft: dict[str, list] = {"cached_first_byte": [], "cached_first_token": [], "new_first_byte": [],
                                     "new_first_token": []}
            for index in range(args.ttft):
                byte, token = time_to_first_token(url, video, targets[index % len(targets)], args.max_tokens)
                ttft["cached_first_byte"].append(byte)
                ttft["cached_first_token"].append(token)
                fresh = make_tracking_video(seed=100 + index, n_frames=30)
                fresh_path = save_video(fresh, video.parent / f"fresh-{index}.mp4")
                byte, token = time_to_first_token(url, fresh_path, next(iter(fresh.objects.values())).boxes[0],
                                                  args.max_tokens)
                ttft["new_first_byte"].append(byte)
                ttft["new_first_token"].append(token)

            hostile_summary = None
            if args.hostile_rounds:
                hostile_summary = run_hostile(args, url, video, targets, kinds, clients, memory, tmp)
            health = httpx.get(f"{base}/health", timeout=30).json()
            cache_mb = sum(p.stat().st_size for p in (tmp / "cache").rglob("*") if p.is_file()) / 1e6
        finally:
            proc.terminate()
            code = proc.wait(120)
            memory.stop.set()

    good = args.workers * args.requests
    wrong = [r for r in bad_results if r[1] != r[2]]
    batched_rps = len(latencies) / load_s if load_s else 0.0
    sequential_rps = len(sequential) / sequential_s if sequential_s else 0.0
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
        "batched_over_sequential": round(batched_rps / sequential_rps, 2) if sequential_rps else None,
        "batched_over_sequential_per_round": [round(r, 2) for r in ratios],
        "batched_over_sequential_median": round(statistics.median(ratios), 2) if ratios else None,
        "time_to_first_token": {name: summarise(values) for name, values in ttft.items()},
        "hostile": hostile_summary,
        "memory_peak_mb": {phase: memory.peak(phase) for phase in memory.samples if phase in ("start", "load", "ttft")},
        "cache_mb_at_end": round(cache_mb, 2), "cache_quota_mb": args.cache_quota_gb * 1000,
        "server_batches": health["batches"], "server_exit_code": code,
    }
    print(json.dumps(summary, indent=2))
    if os.environ.get("SERVE_BENCH_LOG"):
        print("".join(lines), file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))


def run_hostile(args, url: str, video: Path, targets, kinds, clients, memory: Memory, tmp: Path) -> dict:
    """Alternate a clean burst and a burst with hostile clients at work, `--hostile-rounds` times."""
    import httpx

    from artemis_cli.data.synthetic_tracking import write_long_video

    long_video = video.parent / "long.mp4"
    write_long_video(long_video, seconds=100, width=160, height=96, fps=30)  # 3,000 frames
    huge_video = video.parent / "huge.mp4"
    write_long_video(huge_video, seconds=667, width=64, height=48, fps=30)  # 20,010 frames
    requests = hostile_requests(good_body(video, targets[0], QUESTIONS[0], args.max_tokens), long_video, huge_video,
                                video.parent / "pipe.mp4", video.parent)
    if args.no_heavy_video:
        requests = [r for r in requests if "3,000-frame" not in r[0]]
    hostile = Hostile(url, requests)
    phases: dict[str, list[float]] = {"clean": [], "hostile": []}
    per_round: list[dict[str, list[float]]] = []
    failures: list[str] = []

    def burst(phase: str, round_: int) -> float:
        def one(index: int):  # --burst-requests good requests, one after the other
            for k in range(args.burst_requests):
                box, question = kinds[(index + round_ + k) % len(kinds)]
                start = time.perf_counter()
                try:
                    body = good_body(video, box, question, args.max_tokens)
                    target = {"box": body.pop("box"), "frame": body.pop("frame")}
                    clients[index].chat.completions.create(**body, extra_body=target)
                    phases[phase].append(time.perf_counter() - start)
                    per_round[-1][phase].append(phases[phase][-1])
                except Exception as exc:  # noqa: BLE001 - counted
                    failures.append(f"{phase}: {type(exc).__name__}: {exc}"[:300])

        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one, range(args.workers)))
        return time.perf_counter() - started

    try:
        for round_ in range(args.hostile_rounds):
            seconds = {}
            per_round.append({"clean": [], "hostile": []})
            # the same pause before each burst, and the order alternating from round to round, so whatever the
            # first burst after a pause or after the other phase pays falls on both phases alike
            for phase in (("clean", "hostile") if round_ % 2 == 0 else ("hostile", "clean")):
                memory.phase = f"{phase} {round_ + 1}"
                if phase == "hostile":
                    hostile.active.set()  # the hostile clients get going during the pause
                time.sleep(2.0)
                seconds[phase] = burst(phase, round_)
                hostile.active.clear()
                deadline = time.monotonic() + 60  # no hostile work left over into the other phase
                while httpx.get(f"{url.removesuffix('/v1')}/health", timeout=30).json()["preparing"] and \
                        time.monotonic() < deadline:
                    time.sleep(0.1)
            clean_s, hostile_s = seconds["clean"], seconds["hostile"]
            print(f"hostile round {round_ + 1}/{args.hostile_rounds}: clean burst {clean_s:.1f} s, with hostile "
                  f"clients {hostile_s:.1f} s ({len(hostile.results)} hostile requests so far)", file=sys.stderr,
                  flush=True)
    finally:
        hostile.close()
    statuses: dict[str, dict[str, int]] = {}
    for name, expected, got in hostile.results:
        statuses.setdefault(name, {})
        statuses[name][str(got)] = statuses[name].get(str(got), 0) + 1
    wrong = [(name, expected, got) for name, expected, got in hostile.results
             if not (got in expected if isinstance(expected, tuple) else got == expected)]
    clean_p99 = percentile(phases["clean"], 0.99) if phases["clean"] else None
    hostile_p99 = percentile(phases["hostile"], 0.99) if phases["hostile"] else None
    return {"rounds": args.hostile_rounds, "good_per_burst": args.workers * args.burst_requests,
            "good_failed": len(failures),
            "failures": failures[:10],
            "clean": {"answered": len(phases["clean"]), "p50_s": round(percentile(phases["clean"], 0.5), 3),
                      "p99_s": round(clean_p99, 3)},
            "with_hostile": {"answered": len(phases["hostile"]), "p50_s": round(percentile(phases["hostile"], 0.5), 3),
                             "p99_s": round(hostile_p99, 3)},
            "p99_ratio": round(hostile_p99 / clean_p99, 2) if clean_p99 else None,
            # the same ratio within each round (a clean and a hostile burst seconds apart): the shared machine's
            # load changes over minutes
            "p99_ratio_per_round": [round(percentile(r["hostile"], 0.99) / percentile(r["clean"], 0.99), 2)
                                    for r in per_round if r["clean"] and r["hostile"]],
            "p99_ratio_median_of_rounds": round(statistics.median(
                [percentile(r["hostile"], 0.99) / percentile(r["clean"], 0.99) for r in per_round
                 if r["clean"] and r["hostile"]]), 2) if per_round else None,
            "memory_peak_mb": {phase: max(memory.peak(f"{phase} {r + 1}") for r in range(args.hostile_rounds))
                               for phase in ("clean", "hostile")},
            "memory_peak_mb_by_round": [max(memory.peak(f"clean {r + 1}"), memory.peak(f"hostile {r + 1}"))
                                        for r in range(args.hostile_rounds)],
            "hostile_requests": len(hostile.results), "hostile_wrong_status": len(wrong), "wrong": wrong[:10],
            "hostile_statuses": statuses, "held_open": {"half_sent": hostile.half_sent, "slow_uploads": hostile.slow_uploads}}


if __name__ == "__main__":
    main()
