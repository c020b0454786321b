"""`artemis serve` as a subprocess on a free loopback port, driven by real clients (the `openai` client,
httpx, raw sockets, curl): answers equal the `Referrer` in process (and `infer videorefbench` for a
prepared record), batched equals alone under greedy decoding, tokens stream per request while batched,
the OpenAI fields clients send are honoured or refused as "not supported", hostile requests are answered
with their 4xx in bounded time while the server keeps serving, SIGTERM with answers, uploads and
preparations in flight stops at once and loses no answer under way, the cache stays within its quota."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ownvideo_helpers import MAX_NEW, video_file

pytestmark = pytest.mark.slow
QUESTION = "What is the <bbox> doing in this video?"
KEY = "serve-test-key-5f2c9a"
SERVED = "artemis-served"  # the module server's --served-model-name
JSON = {"content-type": "application/json"}


class Server:
    """`python -m artemis_cli serve ... --port 0` with its stderr collected; `url` once it says it serves."""

    def __init__(self, args: list[str], env: dict | None = None, timeout: float = 180, ignore_sigint: bool = False):
        self.lines: list[str] = []
        # ignore_sigint: started as under `nohup ... &` (SIGINT ignored, inherited)
        self.proc = subprocess.Popen([sys.executable, "-m", "artemis_cli", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                     preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                                     if ignore_sigint else None)
        ready = threading.Event()
        self.url = None

        def drain():
            for line in self.proc.stderr:
                self.lines.append(line)
                match = re.search(r"serving (http://\S+)", line)
                if match:
                    self.url = match.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or self.url is None:
            self.stop()
            raise AssertionError("server did not start:\n" + "".join(self.lines))

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    @property
    def address(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        return parsed.hostname, parsed.port

    def client(self, **kwargs):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, timeout=120,
                             **kwargs)

    def stop(self, sig=signal.SIGTERM, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # never leave a server behind a failed test
            self.proc.kill()
            self.proc.wait(30)
            raise


def input_sensitive(tiny_artemis, folder: Path):
    """A copy of the tiny Artemis with its decoder layers and projector x16, saved as a merged checkpoint:
    its greedy answers differ from one box or question to the next (the x4 copy of the own-video tests
    answers every prompt alike), so "batched equals alone" can fail. Returns (folder, LoadedModel)."""
    import copy

    import torch

    from artemis_cli.model.loading import LoadedModel, save_model

    model, tokenizer, processor = tiny_artemis
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and name.startswith(("model.layers", "model.mm_projector")):
                param.mul_(16.0)
    save_model(model, tokenizer, folder)
    return folder, LoadedModel(model=model, tokenizer=tokenizer, image_processor=processor, kind="merged",
                               source=folder)


@pytest.fixture(scope="module")
def sharp(tiny_artemis, tmp_path_factory):
    return input_sensitive(tiny_artemis, tmp_path_factory.mktemp("serve_model") / "artemis")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return video_file(tmp_path_factory.mktemp("serve_video"), n_frames=12)


@pytest.fixture(scope="module")
def server(sharp, clip, sample, tmp_path_factory):
    from artemis_cli.data.layout import ARTEMIS_DATA

    cache = tmp_path_factory.mktemp("serve_cache")
    server = Server(["--model", str(sharp[0]), "--allow-path", str(clip[0].parent),
                     "--allow-path", str(sample.data_root / ARTEMIS_DATA), "--cache-dir", str(cache), "--device", "cpu",
                     "--max-batch", "8", "--batch-wait-ms", "500", "--max-new-tokens", str(MAX_NEW * 4),
                     "--max-request-mb", "1", "--served-model-name", SERVED, "--request-timeout", "3",
                     "--max-video-frames", "400"],
                    env={"ARTEMIS_API_KEY": ""})
    server.cache = cache
    yield server
    assert server.stop() == 0, server.stderr


def ask(client, clip, box, question=QUESTION, model=SERVED, **kwargs):
    extra = {"box": [float(v) for v in box], "frame": kwargs.pop("frame", 0), **kwargs.pop("extra_body", {})}
    kwargs.setdefault("max_tokens", MAX_NEW)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": clip[0] if isinstance(clip[0], str) else clip[0].resolve().as_uri()}},
            {"type": "text", "text": question}]}], extra_body=extra, **kwargs)


def boxes(clip, frame=0):
    return {name: obj.boxes[frame] for name, obj in clip[1].objects.items()}


def body_for(clip, box, question=QUESTION, **extra) -> dict:
    return {"model": SERVED, "max_tokens": MAX_NEW, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": clip[0].resolve().as_uri()}}, {"type": "text", "text": question}]}],
        "box": [float(v) for v in box], "frame": 0, **extra}


def test_an_answer_through_the_openai_client_is_the_referrers(server, sharp, clip, tmp_path):
    import openai

    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import Referrer

    client = server.client()
    assert [m.id for m in client.models.list().data] == [SERVED]
    assert client.models.retrieve(SERVED).id == SERVED
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("artemis")  # the folder's name is not what this server serves
    walker = boxes(clip)["walker"]
    response = ask(client, clip, walker)
    referrer = Referrer(loaded=sharp[1], cache_dir=server.cache)  # the server's track and feature caches
    expected = referrer.ask(referrer.prepare(Target(clip[0].resolve(), tuple(float(v) for v in walker), 0)), QUESTION,
                            decoding=DecodingSettings(max_new_tokens=MAX_NEW))
    assert response.choices[0].message.content == expected.answer and expected.answer
    assert response.usage.completion_tokens == expected.completion_tokens
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.choices[0].finish_reason == ("length" if expected.completion_tokens == MAX_NEW else "stop")
    assert response.model_extra["artemis"]["frames_used"] == expected.frames_used
    assert re.search(r'INFO: 127\.0\.0\.1:\d+ "POST /v1/chat/completions HTTP/1\.1" 200 ', server.stderr)


def test_batched_answers_equal_the_same_requests_alone(server, clip):
    client = server.client()
    cases = [(box, question) for box in boxes(clip).values()
             for question in (QUESTION, "Where does the <bbox> go?")]
    alone = [ask(client, clip, box, question) for box, question in cases]  # also warms the track/feature caches
    assert all(r.model_extra["artemis"]["batch_size"] == 1 for r in alone)
    with ThreadPoolExecutor(len(cases)) as pool:
        together = list(pool.map(lambda case: ask(client, clip, *case), cases))
    sizes = [r.model_extra["artemis"]["batch_size"] for r in together]
    assert max(sizes) >= 3, sizes  # cache hits arrive within --batch-wait-ms of each other
    assert [r.choices[0].message.content for r in together] == [r.choices[0].message.content for r in alone]
    assert len({r.choices[0].message.content for r in alone}) > 1  # the answers do depend on the request


def test_tokens_stream_per_request_while_batched_and_equal_the_plain_answers(server, clip):
    client = server.client()
    targets = list(boxes(clip).values())
    plain = [ask(client, clip, box, max_tokens=MAX_NEW * 4).choices[0].message.content for box in targets]

    def stream(box):
        arrivals, pieces, finish = [], [], None
        start = time.perf_counter()
        for chunk in ask(client, clip, box, max_tokens=MAX_NEW * 4, stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                arrivals.append(time.perf_counter() - start)
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = (time.perf_counter() - start, chunk.model_extra["artemis"]["batch_size"])
        return "".join(pieces), arrivals, finish

    with ThreadPoolExecutor(len(targets)) as pool:
        streamed = list(pool.map(stream, targets))
    assert [text for text, _, _ in streamed] == plain
    for text, arrivals, (finished, batch_size) in streamed:
        assert batch_size == len(targets)  # generated together, streamed apart
        assert len(arrivals) >= 3 and arrivals[0] < finished  # in pieces as generated, not one chunk at the end


def test_a_new_video_streams_its_role_chunk_at_once_and_keeps_the_connection_alive(server, clip, tmp_path):
    import httpx

    fresh = video_file(clip[0].parent, seed=7, n_frames=30, name="fresh.mp4")
    box = next(iter(boxes(fresh).values()))
    with httpx.Client(timeout=120) as http:
        start = time.perf_counter()
        with http.stream("POST", f"{server.url}/chat/completions", json=body_for(fresh, box, stream=True)) as response:
            blocks, times = [], []
            for line in response.iter_lines():
                if line:
                    blocks.append(line)
                    times.append(time.perf_counter() - start)
    first_content = next(i for i, b in enumerate(blocks) if '"content": "' in b and '"role"' not in b)
    assert '"role": "assistant"' in blocks[0] and times[0] < times[first_content]
    assert any(b.startswith(": artemis {") and '"stage": "track"' in b for b in blocks[1:first_content])
    assert blocks[-1] == "data: [DONE]"


def test_openai_fields_stop_n_logprobs_developer_context_and_unsupported(server, clip):
    import openai

    client = server.client()
    walker = boxes(clip)["walker"]
    plain = ask(client, clip, walker, max_tokens=MAX_NEW * 4).choices[0].message.content
    stop = plain[len(plain) // 2:][:2]
    cut = ask(client, clip, walker, max_tokens=MAX_NEW * 4, stop=[stop])
    assert cut.choices[0].message.content == plain[:plain.index(stop)].strip()
    assert cut.choices[0].finish_reason == "stop"
    samples = ask(client, clip, walker, n=3, temperature=1.0, seed=1)
    assert [c.index for c in samples.choices] == [0, 1, 2] and len({c.message.content for c in samples.choices}) > 1
    with_logprobs = ask(client, clip, walker, logprobs=True, top_logprobs=2)
    entries = with_logprobs.choices[0].logprobs.content
    assert len(entries) == with_logprobs.usage.completion_tokens and len(entries[0].top_logprobs) == 2
    developer = client.chat.completions.create(
        model=SERVED, max_tokens=MAX_NEW, extra_body={"box": list(walker), "frame": 0},
        messages=[{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": clip[0].resolve().as_uri()}},
            {"type": "text", "text": QUESTION}]}])
    assert developer.usage.prompt_tokens != with_logprobs.usage.prompt_tokens  # its own system prompt
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, clip, walker, question=QUESTION + " " + "Describe it in great detail. " * 700)
    assert info.value.code == "context_length_exceeded" and "maximum context length is 4096" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, clip, walker, max_tokens=MAX_NEW * 4 + 1)
    assert "--max-new-tokens" in str(info.value) and info.value.param == "max_tokens"
    for field in ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
                  {"response_format": {"type": "json_object"}}, {"presence_penalty": 0.5}):
        with pytest.raises(openai.BadRequestError) as info:
            ask(client, clip, walker, **field)
        assert "not supported" in str(info.value) and "typo" not in str(info.value)
    neutral = ask(client, clip, walker, max_tokens=MAX_NEW * 4, presence_penalty=0, frequency_penalty=0, tools=[])
    assert neutral.choices[0].message.content == plain  # neutral values are accepted (frameworks send them)


def test_a_streamed_answer_is_the_plain_answer(server, clip):
    client = server.client()
    leaver = boxes(clip)["leaver"]
    plain = ask(client, clip, leaver)
    chunks = list(ask(client, clip, leaver, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, clip, tmp_path):
    import httpx
    import openai

    client = server.client()
    walker = boxes(clip)["walker"]
    with pytest.raises(openai.BadRequestError, match="exactly one <bbox>"):
        ask(client, clip, walker, "What is it doing?")
    with pytest.raises(openai.BadRequestError, match="outside frame 0"):
        ask(client, clip, [walker[0], walker[1], 900.0, walker[3]])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}],
                                       extra_body={"box": list(walker)})
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(clip[0].read_bytes())
    forbidden = [pytest.raises(openai.PermissionDeniedError) for _ in range(2)]
    with forbidden[0] as first:
        ask(client, (outside, clip[1]), walker)
    with forbidden[1] as second:
        ask(client, (clip[0].parent / "no-such.mp4", clip[1]), walker)
    assert first.value.message == second.value.message and "--allow-path" in first.value.message
    bad_json = httpx.post(f"{server.url}/chat/completions", content=b"{not json", headers=JSON, timeout=30)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    huge = httpx.post(f"{server.url}/chat/completions", content=b" " * 1_500_000, headers=JSON, timeout=60)
    assert huge.status_code == 413 and "--max-request-mb" in huge.json()["error"]["message"]
    # still serving; a data: URL of the same bytes is the same video (the caches key on content)
    by_file = ask(client, clip, walker).choices[0].message.content
    upload = "data:video/mp4;base64," + base64.b64encode(clip[0].read_bytes()).decode()
    assert ask(client, (upload, None), walker).choices[0].message.content == by_file
    assert len(list((server.cache / "uploads").iterdir())) == 1


def test_hostile_bodies_paths_and_videos_get_their_4xx_in_bounded_time(server, clip, sample, tmp_path):
    import httpx

    from artemis_cli.data.layout import ARTEMIS_DATA
    from artemis_cli.data.synthetic_tracking import write_long_video

    walker = boxes(clip)["walker"]
    source = next(p for p in sorted(sample.annotations.rglob("*.json")) if "videorefbench" in str(p))
    record = json.loads(source.read_text())[0]
    (tmp_path / "secret.pkl").write_bytes(b"not for clients")
    with_record = lambda **change: json.dumps({  # noqa: E731
        "model": SERVED, "messages": [{"role": "user", "content": QUESTION}], "record": dict(record, **change),
        "data_root": str(sample.data_root / ARTEMIS_DATA)})
    os.mkfifo(clip[0].parent / "pipe.mp4")
    long_video = clip[0].parent / "long.mp4"
    write_long_video(long_video, seconds=20, width=160, height=96, fps=30)  # 600 frames: over --max-video-frames 400
    many_messages = body_for(clip, walker, messages=[{"role": "user", "content": "x"}] * 15_000)
    cases = [
        ("deep JSON", b"[" * 200_000 + b"]" * 200_000, 400),
        ("a 400-digit number", json.dumps(body_for(clip, walker)).replace('"frame": 0', '"frame": ' + "9" * 400), 400),
        ("NaN", json.dumps(body_for(clip, walker)).replace('"frame": 0', '"frame": NaN'), 400),
        ("15,000 messages", json.dumps(many_messages, separators=(",", ":")), 400),
        ("a FIFO", json.dumps(body_for((clip[0].parent / "pipe.mp4", None), walker)), 400),
        ("a video over the limits", json.dumps(body_for((long_video, None), [60, 30, 90, 60])), 400),
        ("a record escaping --allow-path", with_record(clip_path="../" * 12 + str(tmp_path / "secret.pkl")), 403),
        ("a record naming a missing file", with_record(clip_path="HC-STVG/clip_feature/missing.pkl"), 403),
        ("a record's frame escaping", with_record(frame_id=["../" * 12 + "etc/passwd"] + record["frame_id"][1:]), 403),
    ]
    http_answers: dict[str, str] = {}
    with httpx.Client(timeout=30) as http:
        for name, raw, status in cases:
            start = time.perf_counter()
            response = http.post(f"{server.url}/chat/completions", content=raw, headers=JSON)
            http_answers[name] = response.json()["error"]["message"]
            assert response.status_code == status, (name, response.text[:300])
            assert len(response.text) < 2500 and "role" not in response.text, name
            assert str(clip[0].parent) not in response.text and str(server.cache) not in response.text, name
            assert time.perf_counter() - start < 10, name
            assert http.get(f"{server.base}/health").status_code == 200
    refused = [http_answers[name] for name in http_answers if "record" in name]
    assert len({r.split(": ", 1)[1] for r in refused}) == 1  # one message: missing and forbidden alike
    assert "over the limit of 400" in http_answers["a video over the limits"]
    assert ask(server.client(), clip, walker).choices[0].message.content  # still serving


def test_half_sent_requests_are_answered_408_and_never_block_the_others(server, clip):
    address = server.address
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
    half_headers, half_bodies = [], []
    try:
        for _ in range(300):
            sock = socket.create_connection(address, timeout=30)
            sock.sendall(head)  # the headers never end
            half_headers.append(sock)
        for _ in range(50):
            sock = socket.create_connection(address, timeout=30)
            sock.sendall(head + b"Content-Length: 100000\r\n\r\n" + b'{"model": "')  # the body never ends
            half_bodies.append(sock)
        start = time.perf_counter()
        assert ask(server.client(), clip, boxes(clip)["walker"]).choices[0].message.content
        assert time.perf_counter() - start < 20  # served meanwhile (--request-timeout is 3 s)
        for sock in half_headers[:20] + half_bodies[:20]:
            answer = _read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"request_timeout" in answer
    finally:
        for sock in half_headers + half_bodies:
            sock.close()


def _read_all(sock: socket.socket, limit: float = 20) -> bytes:
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_cross_site_posts_foreign_hosts_docs_and_a_streamed_answer(server, clip):
    body = json.dumps(body_for(clip, boxes(clip)["walker"], stream=True))

    def curl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "-N", "--max-time", "60", "-w", "\n%{http_code}", *args],
                              capture_output=True, text=True, timeout=90)

    url = f"{server.url}/chat/completions"
    plain_text = curl(url, "-H", "Content-Type: text/plain", "-d", body)  # what a cross-site form can send
    assert plain_text.stdout.endswith("415") and "application/json" in plain_text.stdout
    rebound = curl(url, "-H", "Host: evil.example:8000", "-H", "Content-Type: application/json", "-d", body)
    assert rebound.stdout.endswith("403") and "invalid_host" in rebound.stdout
    preflight = curl("-X", "OPTIONS", url, "-H", "Origin: https://evil.example", "-H",
                     "Access-Control-Request-Method: POST", "-i")
    assert "access-control-allow-origin" not in preflight.stdout.lower()
    streamed = curl(url, "-H", "Content-Type: application/json", "-d", body)
    events = [line[6:] for line in streamed.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert streamed.stdout.endswith("200")
    schema = json.loads(curl(f"{server.base}/openapi.json").stdout.rsplit("\n", 1)[0])
    assert {"box", "frame", "keys"} <= set(schema["components"]["schemas"]["ChatRequest"]["properties"])
    assert "swagger" in curl(f"{server.base}/docs").stdout.lower()


def test_a_prepared_record_is_answered_as_infer_videorefbench_answers_it(server, sharp, sample, tmp_path):
    from artemis_cli.data.layout import ARTEMIS_DATA
    from artemis_cli.infer import InferConfig, infer
    from artemis_cli.model.generation import DecodingSettings

    source = next(p for p in sorted(sample.annotations.rglob("*.json")) if "videorefbench" in str(p))
    record = json.loads(source.read_text())[0]
    one = tmp_path / "one.json"
    one.write_text(json.dumps([record]))
    out = tmp_path / "preds.jsonl"
    infer(InferConfig(task={"kind": "videorefbench", "annotations": one, "data_root": sample.data_root},
                      model="unused", output=out, decoding=DecodingSettings(max_new_tokens=MAX_NEW), device="cpu",
                      show_progress=False), loaded=sharp[1])
    expected = json.loads(out.read_text())["pred"]
    response = server.client().chat.completions.create(
        model=SERVED, max_tokens=MAX_NEW, messages=[{"role": "user", "content": QUESTION}],
        extra_body={"record": record, "data_root": str(sample.data_root / ARTEMIS_DATA)})
    assert response.choices[0].message.content == expected


def test_sigterm_stops_uploads_and_preparations_at_once_and_answers_what_was_queued(server, sharp, clip):
    import httpx

    from artemis_cli.data.synthetic_tracking import write_long_video
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import Referrer

    cache = server.cache  # (the module's server keeps running: this is a second one)
    warm = Referrer(loaded=sharp[1], cache_dir=cache, stride=1)  # tracks and features on disk (hits after the tests
    for box in boxes(clip).values():  # above), so the server's requests are queued within milliseconds
        warm.prepare(Target(clip[0].resolve(), tuple(float(v) for v in box), 0))
    long_video = clip[0].parent / "long-prepare.mp4"
    truth = write_long_video(long_video, seconds=60, width=320, height=180, fps=30)
    server = Server(["--model", str(sharp[0]), "--allow-path", str(clip[0].parent), "--cache-dir", str(cache),
                     "--device", "cpu", "--batch-wait-ms", "3000", "--max-new-tokens", str(MAX_NEW), "--stride", "1"],
                    env={"ARTEMIS_API_KEY": KEY})
    try:
        client = server.client(api_key=KEY)
        headers = {"authorization": f"Bearer {KEY}", **JSON}
        with httpx.Client(timeout=120, headers=headers) as http:
            preparing = threading.Thread(target=lambda: results.append(http.post(
                f"{server.url}/chat/completions", json=dict(body_for((long_video, None), truth.boxes[0]),
                                                            model="artemis"))))
            results: list = []
            preparing.start()
            deadline = time.monotonic() + 60
            while http.get(f"{server.base}/health").json()["preparing"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            start = time.perf_counter()  # a known target is answered while a long video is tracked
            assert ask(client, clip, boxes(clip)["walker"], model="artemis").choices[0].message.content
            assert time.perf_counter() - start < 30
            with pytest.raises(httpx.ReadTimeout):  # one more long video, whose client gives up while it waits
                http.post(f"{server.url}/chat/completions", timeout=1.5, json=dict(
                    body_for((long_video, None), [v + 2 for v in truth.boxes[0]]), model="artemis"))
            deadline = time.monotonic() + 10
            while http.get(f"{server.base}/health").json()["preparing"] > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.get(f"{server.base}/health").json()["preparing"] == 1  # its preparation was dropped
            upload = socket.create_connection(server.address, timeout=60)  # a slow upload, never finished
            upload.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                           "Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n{\"model\": \"".encode())
            cases = list(boxes(clip).values()) * 2
            with ThreadPoolExecutor(len(cases)) as pool:
                futures = [pool.submit(ask, client, clip, box, model="artemis") for box in cases]
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:  # all queued (prepared), none answered yet
                    health = http.get(f"{server.base}/health").json()
                    if health["in_flight"] == len(cases) or any(f.done() for f in futures):
                        break
                    time.sleep(0.05)
                assert not any(f.done() for f in futures) and health["in_flight"] == len(cases)
                stopped_at = time.perf_counter()
                server.proc.send_signal(signal.SIGTERM)
                answers = [f.result(timeout=120) for f in futures]
            assert all(a.choices[0].message.content for a in answers)
            assert server.proc.wait(60) == 0 and time.perf_counter() - stopped_at < 30
            preparing.join(30)
            assert results[0].status_code == 503 and results[0].json()["error"]["code"] == "shutting_down"
            assert _read_all(upload).startswith(b"HTTP/1.1 503")
            upload.close()
        assert "stopped (SIGTERM)" in server.stderr and f"{len(cases) + 1} request(s) answered" in server.stderr
        assert KEY not in server.stderr and server.stderr.count("POST /v1/chat/completions") >= len(cases) + 3
    finally:
        server.stop(signal.SIGKILL)


def test_the_cache_keeps_its_quota_a_failed_upload_leaves_nothing_and_connections_are_bounded(sharp, clip, tmp_path):
    import httpx

    cache = tmp_path / "cache"
    quota = 300_000
    server = Server(["--model", str(sharp[0]), "--allow-path", str(clip[0].parent), "--cache-dir", str(cache),
                     "--device", "cpu", "--batch-wait-ms", "0", "--max-new-tokens", str(MAX_NEW),
                     "--cache-quota-gb", str(quota / 1e9), "--max-connections", "8", "--no-access-log"])
    try:
        client = server.client()

        def size() -> int:
            return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))

        walker = boxes(clip)["walker"]
        for shift in range(5):  # new targets: 1 px apart, each a track of its own
            box = [walker[0] + shift, walker[1], walker[2] + shift, walker[3]]
            assert ask(client, clip, box, model="artemis").choices[0].message.content
        health = httpx.get(f"{server.base}/health", timeout=30).json()
        assert health["cache_evicted"] >= 1 and size() <= 2 * quota, size()
        before = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
        broken = "data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000)).decode()
        with pytest.raises(Exception) as info:
            ask(client, (broken, None), walker, model="artemis")
        assert getattr(info.value, "status_code", None) == 400
        assert sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file()) == before  # nothing kept
        idle = [socket.create_connection(server.address, timeout=30) for _ in range(12)]
        try:  # (the client's own connection may count too: only the last four are sure to be over the limit)
            answers = [_read_all(sock) for sock in idle[8:]]
            assert all(a.startswith(b"HTTP/1.1 503") and b"--max-connections" in a for a in answers), answers
        finally:
            for sock in idle:
                sock.close()
        assert ask(client, clip, walker, model="artemis").choices[0].message.content
    finally:
        assert server.stop() == 0


def test_ctrl_c_stops_a_server_started_with_sigint_ignored(sharp, tmp_path):
    server = Server(["--model", str(sharp[0]), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"],
                    ignore_sigint=True)
    assert server.stop(signal.SIGINT, timeout=60) == 130
    assert "interrupted: the server stopped" in server.stderr and "rerun" not in server.stderr


def test_a_non_loopback_host_without_a_key_or_an_impossible_quantize_is_refused_before_binding(monkeypatch):
    from typer.testing import CliRunner

    from artemis_cli.cli.app import app
    from artemis_cli.serve import server as serve_module

    def never(*args, **kwargs):
        raise AssertionError("bound a socket")

    monkeypatch.setattr(serve_module, "bind", never)
    monkeypatch.delenv("ARTEMIS_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--model", "/nonexistent", "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "error: --host 0.0.0.0 is reachable from other machines: it needs an API key" in result.output
    assert "ARTEMIS_API_KEY" in result.output and "loading" not in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "/nonexistent", "--quantize", "int4", "--device", "cpu"])
    assert result.exit_code == 2 and "int4 needs a CUDA GPU" in result.output, result.output


def test_serve_help_shows_an_example_request():
    from typer.testing import CliRunner

    from artemis_cli.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in result.output
    assert '"box": [120, 40, 260, 300]' in result.output and "What is the <bbox> doing" in result.output
    for flag in ("--served-model-name", "--cors-origin", "--cache-quota-gb", "--prepare-timeout", "--request-timeout"):
        assert flag in result.output
