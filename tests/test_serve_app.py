"""The `artemis serve` app in process, over a fake referrer: routes, key check, error bodies and
statuses, size limit, data: URLs, prepared records, streaming, a model failure that stays one
request's 500, and the guards against hostile requests (paths, JSON, fields, hosts, content types,
busy preparation, uploads of failed requests). (The real model behind real clients: tests/test_serve.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from artemis_cli.errors import InputError, UsageError
from artemis_cli.ownvideo.prepare import PreparedTarget
from artemis_cli.ownvideo.referrer import Answer, ContextLengthError, check_question
from artemis_cli.serve.app import AppSettings, Relay, build_app

QUESTION = "What is the <bbox> doing in this video?"
KEY = "test-key-0123456789"


class FakeReferrer:
    """Frames are 320x180; answers echo the question (streamed word by word); a question with 'explode'
    crashes the model call; a video whose bytes start with b"BROKEN" cannot be prepared; `gate`, when set
    to an Event, holds every preparation until it is set."""

    model_name = "fake-artemis"
    context_length = 4096

    def __init__(self):
        self.batches: list[list[str]] = []
        self.queries: list = []
        self.prepared: list = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.prepare_s = 0.0

    def prepare(self, target, *, progress=None, limits=None, check=None):
        x1, y1, x2, y2 = target.box
        if x1 < 0 or y1 < 0 or x2 > 320 or y2 > 180:
            raise UsageError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: outside frame {target.frame} (320x180 px)")
        if Path(target.video).is_file() and Path(target.video).read_bytes().startswith(b"BROKEN"):
            raise InputError(f"{target.video}: cannot decode the video (Invalid data found)")
        for step in range(10):
            if self.gate is not None:
                while not self.gate.wait(0.05):
                    check(-1)
            if progress is not None:
                progress("track", step / 10)
            time.sleep(self.prepare_s / 10)
        self.prepared.append(target)
        return PreparedTarget(target=target, record={}, root=Path("."), frame_size=(320, 180), num_frames=10,
                              timings={})

    def count_prompt_tokens(self, question, history=(), system=None):
        return 300 + len(question) + sum(len(q) + len(a) for q, a in history)

    def check_context(self, prompt, max_new):
        if prompt + max_new > self.context_length:
            raise ContextLengthError(prompt, max_new, self.context_length, self.context_length)

    def ask_many(self, items, decoding=None):
        with self.lock:
            self.batches.append([q.question for q in items])
            self.queries.extend(items)
        if any("explode" in q.question for q in items):
            for q in items:  # some text goes out before the crash
                if q.on_text is not None:
                    q.on_text("partial ")
            raise RuntimeError("CUDA error: device-side assert")
        out = []
        for q in items:
            check_question(q.question, q.history)
            text = f"{len(q.history)} turns: {q.question} / {decoding.max_new_tokens} {decoding.sample}"
            if q.system:
                text += f" [{q.system}]"
            for stop in q.stop:
                if stop in text:
                    text = text[:text.index(stop)].strip()
            words = text.split(" ")
            for index, word in enumerate(words):
                if q.on_text is not None and q.on_text(word if index == 0 else " " + word):
                    break
            logprobs = [{"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": []}
                        for w in words] if q.top_logprobs is not None else None
            out.append(Answer(answer=text, question=q.question, frames_used=[0] * 9, prompt_tokens=100,
                              completion_tokens=7, timings={"inputs": 0.0, "generate": 0.01},
                              finish_reason="stop", logprobs=logprobs))
        return out


def chat_body(url="file:///ALLOWED/clip.mp4", question=QUESTION, **extra):
    body = {"model": "fake-artemis", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}]}],
        "box": [10, 10, 50, 50], "frame": 0}
    body.update(extra)
    return body


def make_app(tmp_path, referrer=None, **overrides):
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    if not (videos / "clip.mp4").exists():
        (videos / "clip.mp4").write_bytes(b"not decoded by the fake")
    referrer = referrer or FakeReferrer()
    settings = dict(api_key=None, allow_paths=[videos.resolve()], upload_dir=tmp_path / "cache" / "uploads",
                    max_request_bytes=20_000, max_batch=8, batch_wait_s=0.3, access_log=None)
    settings.update(overrides)
    return build_app(referrer, AppSettings(**settings)), referrer, videos


@pytest.fixture
def served(tmp_path):
    app, referrer, videos = make_app(tmp_path)
    yield app, referrer, videos, tmp_path
    app.state.queue.close(timeout=5)
    app.state.preparer.close()


def post_all(app, bodies, headers=None, raw=None):
    """POST every body at once (so they can share a batch); returns the httpx responses."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            if raw is not None:
                return [await client.post("/v1/chat/completions", content=raw,
                                          headers={"content-type": "application/json", **(headers or {})})]
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=b, headers=headers) for b in bodies))

    return asyncio.run(main())


def get(app, path, headers=None):
    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(main())


def url_of(videos: Path) -> str:
    return (videos / "clip.mp4").resolve().as_uri()


def events_of(response) -> list:
    """The `data:` events of an SSE body ("[DONE]" as a string, the rest parsed)."""
    out = []
    for block in response.text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                data = line[len("data: "):]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_answer_usage_models_and_health(served):
    app, referrer, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), max_tokens=12)])
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "fake-artemis"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": f"0 turns: {QUESTION} / 12 False"}
    assert data["choices"][0]["finish_reason"] == "stop" and data["choices"][0]["logprobs"] is None
    assert data["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    assert data["artemis"]["batch_size"] == 1 and len(data["artemis"]["frames_used"]) == 9
    assert referrer.prepared[0].video == videos.resolve() / "clip.mp4" and referrer.prepared[0].box == (10, 10, 50, 50)
    assert get(app, "/v1/models").json()["data"][0]["id"] == "fake-artemis"
    assert get(app, "/health").json()["status"] == "ok"


def test_models_by_id_and_the_served_name(tmp_path):
    app, _, videos = make_app(tmp_path, served_name="artemis-7b-v1")
    try:
        assert get(app, "/v1/models").json()["data"][0]["id"] == "artemis-7b-v1"
        one = get(app, "/v1/models/artemis-7b-v1")
        assert one.status_code == 200 and one.json()["id"] == "artemis-7b-v1" and one.json()["object"] == "model"
        missing = get(app, "/v1/models/gpt-4o")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
        assert post_all(app, [chat_body(url_of(videos))])[0].status_code == 404  # the folder name is not served
        assert post_all(app, [chat_body(url_of(videos), model="artemis-7b-v1")])[0].status_code == 200
    finally:
        app.state.queue.close(timeout=5)


def test_concurrent_requests_share_one_batch_and_a_model_crash_fails_only_its_request(served):
    app, referrer, videos, _ = served
    questions = [QUESTION, "Where does the <bbox> go?", "explode the <bbox>", "Is the <bbox> moving?"]
    responses = post_all(app, [chat_body(url_of(videos), q) for q in questions])
    assert [r.status_code for r in responses] == [200, 200, 500, 200]
    error = responses[2].json()["error"]
    assert error["type"] == "server_error" and "RuntimeError: CUDA error" in error["message"]
    assert [r.json()["choices"][0]["message"]["content"].split(": ", 1)[1].split(" / ")[0]
            for r in (responses[0], responses[1], responses[3])] == [questions[0], questions[1], questions[3]]
    assert sorted(referrer.batches[0]) == sorted(questions)  # one batch of four, then one by one
    assert sorted(len(b) for b in referrer.batches[1:]) == [1, 1, 1, 1]
    [again] = post_all(app, [chat_body(url_of(videos))])  # still serving
    assert again.status_code == 200


@pytest.mark.parametrize("change, status, words", [
    ({"model": "gpt-4o"}, 404, "model 'gpt-4o' does not exist"),
    ({"question": "What is it doing?"}, 400, "exactly one <bbox>"),
    ({"box": [10, 10, 500, 50]}, 400, "box 10,10,500,50: outside frame 0"),
    ({"box": [1, 2, 3]}, 400, "box is 4 numbers"),
    ({"box": None}, 400, "the target is missing"),
    ({"temperatur": 0.2}, 400, "temperatur: unknown key"),
    ({"n": 9}, 400, "n:"),
    ({"url": "https://example.com/v.mp4"}, 400, "https URLs are not read"),
    ({"url": "file:///etc/passwd"}, 403, "not found, or outside the folders this server may read"),
    ({"url": "file:///ALLOWED/missing.mp4"}, 403, "not found, or outside the folders this server may read"),
    ({"url": "data:video/mp4;base64,@@@"}, 400, "not valid base64"),
    ({"url": "data:image/png;base64,AAAA"}, 400, "unsupported type image/png"),
    ({"messages": [{"role": "user", "content": QUESTION}]}, 400, "the video is missing"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, 400, "go first"),
    ({"box": [1, 2, 3, 10 ** 400]}, 400, "box.3: Input should be a valid number"),
    ({"box": [1, 2, 3, 1e300]}, 400, "box.3: Input should be less than or equal to 1000000"),
    ({"frame": 10 ** 30}, 400, "frame: Input should be less than or equal to"),
    ({"keys": [{"frame": 3, "box": [1, 2, 3, 10 ** 50]}]}, 400, "keys.0.box.3"),
    ({"seed": 10 ** 40}, 400, "seed:"),
    ({"top_k": 10 ** 40}, 400, "top_k:"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"top_logprobs": 3}, 400, "top_logprobs needs logprobs"),
])
def test_bad_requests_get_their_4xx_with_an_openai_error_body(served, change, status, words):
    app, referrer, videos, _ = served
    change = dict(change)
    url = change.pop("url", url_of(videos)).replace("/ALLOWED", str(videos.resolve()))
    body = chat_body(url, change.pop("question", QUESTION))
    body.update(change)
    if body.get("box") is None:
        body.pop("box")
    [response] = post_all(app, [body])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert str(videos) not in response.text and len(response.text) < 3000
    assert referrer.batches == []  # nothing reached the model


def test_a_missing_path_and_a_forbidden_one_get_the_same_answer(served, tmp_path):
    app, _, videos, _ = served
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (videos / "escape.mp4").symlink_to(outside)
    answers = [post_all(app, [chat_body(url)])[0] for url in (
        outside.as_uri(), (videos / "nothing.mp4").as_uri(), (videos / "escape.mp4").as_uri(),
        (videos / ".." / "secret.mp4").as_uri())]
    assert [r.status_code for r in answers] == [403] * 4
    assert len({r.json()["error"]["message"] for r in answers}) == 1 and "secret" not in answers[0].text


def test_a_fifo_is_refused_at_once(served):
    app, _, videos, _ = served
    os.mkfifo(videos / "pipe.mp4")
    start = time.perf_counter()
    [response] = post_all(app, [chat_body((videos / "pipe.mp4").as_uri())])
    assert response.status_code == 400 and "FIFO" in response.json()["error"]["message"]
    assert time.perf_counter() - start < 5
    frames = videos / "frames"
    frames.mkdir()
    os.mkfifo(frames / "00001.jpg")
    [response] = post_all(app, [chat_body(frames.as_uri())])
    assert response.status_code == 400 and "regular image files" in response.json()["error"]["message"]


def test_hostile_json_is_refused_fast_with_a_short_message(tmp_path):
    app, referrer, videos = make_app(tmp_path, max_request_bytes=40_000_000)
    try:
        cases = {
            "deep": b"[" * 200_000 + b"]" * 200_000,
            "nested dict": json.dumps(chat_body(url_of(videos), record=_nested(100))).encode(),
            "NaN": json.dumps(chat_body(url_of(videos))).replace('"frame": 0', '"frame": NaN').encode(),
            "long number": json.dumps(chat_body(url_of(videos))).replace('"frame": 0', '"frame": ' + "9" * 5000).encode(),
            "many messages": json.dumps(chat_body(url_of(videos), messages=[{"role": "user", "content": "x"}] * 300_000)).encode(),
            "many objects": b'{"model": "fake-artemis", "x": [' + b"{}," * 30_000 + b"{}]}",
        }
        for name, raw in cases.items():
            start = time.perf_counter()
            [response] = post_all(app, [], raw=raw)
            assert response.status_code == 400, (name, response.text[:300])
            assert len(response.text) < 2500 and "role" not in response.text, name
            assert time.perf_counter() - start < 5, name
        assert referrer.batches == []
    finally:
        app.state.queue.close(timeout=5)


def _nested(depth: int):
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_bad_json_oversized_and_non_json_bodies(served):
    app, _, videos, _ = served
    [response] = post_all(app, [], raw=b'{"model": "fake-artemis", "messages": [')
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    big = chat_body(url_of(videos), QUESTION + " " + "x" * 20_000)
    [response] = post_all(app, [big])
    assert response.status_code == 413 and "--max-request-mb" in response.json()["error"]["message"]
    assert get(app, "/v1/nothing").status_code == 404 and "error" in get(app, "/v1/nothing").json()
    body = json.dumps(chat_body(url_of(videos))).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        [response] = post_all(app, [], raw=body, headers={"content-type": kind} if kind else {"content-type": ""})
        assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type", kind


def test_a_foreign_host_is_refused_without_a_key_and_cors_only_when_asked(tmp_path):
    app, _, videos = make_app(tmp_path, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    try:
        for host, status in (("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:8000", 200),
                             ("evil.example:8000", 403), ("127.0.0.1.evil.example", 403)):
            [response] = post_all(app, [chat_body(url_of(videos))], headers={"host": host})
            assert response.status_code == status, (host, response.text)
            if status == 403:
                assert response.json()["error"]["code"] == "invalid_host"
        [response] = post_all(app, [chat_body(url_of(videos))], headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
        preflight = asyncio.run(_options(app, "https://evil.example"))
        assert "access-control-allow-origin" not in preflight.headers and preflight.status_code >= 400
    finally:
        app.state.queue.close(timeout=5)
    app, _, videos = make_app(tmp_path, cors_origins=["https://ok.example"], api_key=KEY)
    try:
        preflight = asyncio.run(_options(app, "https://ok.example"))
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://ok.example"
        [response] = post_all(app, [chat_body(url_of(videos))], headers={"origin": "https://ok.example",
                                                                         "authorization": f"Bearer {KEY}"})
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "https://ok.example"
        assert "access-control-allow-origin" not in asyncio.run(_options(app, "https://evil.example")).headers
    finally:
        app.state.queue.close(timeout=5)


async def _options(app, origin):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
        return await client.options("/v1/chat/completions", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type"})


def test_no_allow_path_means_no_local_files(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    app = build_app(FakeReferrer(), AppSettings(upload_dir=tmp_path / "uploads", access_log=None))
    try:
        [response] = post_all(app, [chat_body((tmp_path / "clip.mp4").as_uri())])
        assert response.status_code == 403 and "--allow-path" in response.json()["error"]["message"]
    finally:
        app.state.queue.close(timeout=5)


def test_a_data_url_video_is_stored_once_by_content_and_a_failed_one_not_at_all(served):
    app, referrer, _, tmp_path = served
    upload_dir = tmp_path / "cache" / "uploads"
    payload = b"\x00\x00\x00\x18ftypmp42 fake video bytes"
    url = "data:video/mp4;base64," + base64.b64encode(payload).decode()
    responses = post_all(app, [chat_body(url), chat_body(url)])
    assert [r.status_code for r in responses] == [200, 200]
    stored = list(upload_dir.iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".mp4" and stored[0].read_bytes() == payload
    assert {t.video for t in referrer.prepared} == {stored[0]}
    broken = "data:video/mp4;base64," + base64.b64encode(b"BROKEN video").decode()
    [response] = post_all(app, [chat_body(broken)])
    assert response.status_code == 400 and "cannot decode" in response.json()["error"]["message"]
    assert str(upload_dir) not in response.text and "uploads" not in response.text  # no server path shown
    assert list(upload_dir.iterdir()) == stored  # the failed upload was removed


def test_the_key_is_required_checked_and_never_echoed(served):
    app, _, videos, tmp_path = served
    app_with_key, _, _ = make_app(tmp_path, api_key=KEY)
    try:
        for headers in (None, {"authorization": "Bearer wrong-key-123"}, {"authorization": KEY}):
            [response] = post_all(app_with_key, [chat_body(url_of(videos))], headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
            assert "wrong-key-123" not in response.text and KEY not in response.text
        assert get(app_with_key, "/v1/models").status_code == 401
        assert get(app_with_key, "/health").status_code == 200  # for load balancers: no key, no details
        assert get(app_with_key, "/openapi.json").status_code == 200
        [response] = post_all(app_with_key, [chat_body(url_of(videos))], headers={"authorization": f"Bearer {KEY}"})
        assert response.status_code == 200
    finally:
        app_with_key.state.queue.close(timeout=5)


def test_history_sampling_and_system_fields_reach_the_referrer(served):
    app, referrer, videos, _ = served
    body = chat_body(url_of(videos), QUESTION, temperature=0.7, top_p=0.9, seed=3, max_completion_tokens=5)
    body["messages"] += [{"role": "assistant", "content": "It walks."}, {"role": "user", "content": "Where to?"}]
    [response] = post_all(app, [body])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "1 turns: Where to? / 5 True"
    body["messages"][2]["content"] = "And <bbox>?"  # a <bbox> in a follow-up: the same target, in words (as chat
    body["messages"] += [{"role": "assistant", "content": "Left."},  # and web), in the replayed history too
                         {"role": "user", "content": "Where does the <bbox> go?"}]
    [response] = post_all(app, [body])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("2 turns: Where does the target go? /")
    assert [q for q, _ in referrer.queries[-1].history] == [QUESTION, "And the target?"]
    body["messages"][0]["content"][-1]["text"] = "Where does it go?"  # the first question still needs its <bbox>
    [response] = post_all(app, [body])
    assert response.status_code == 400 and "<bbox>" in response.json()["error"]["message"]
    for role in ("system", "developer"):
        body = chat_body(url_of(videos))
        body["messages"].insert(0, {"role": role, "content": "Answer in five words."})
        [response] = post_all(app, [body])
        assert response.status_code == 200, response.text
        assert referrer.queries[-1].system == "Answer in five words."


def test_max_tokens_is_capped_by_the_flag_and_the_context(served):
    app, referrer, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), max_tokens=1025)])
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "max_tokens" and "--max-new-tokens" in error["message"]
    [response] = post_all(app, [chat_body(url_of(videos), max_completion_tokens=5000)])
    assert response.status_code == 400 and response.json()["error"]["param"] == "max_completion_tokens"
    [response] = post_all(app, [chat_body(url_of(videos))])  # default: the flag
    assert response.json()["choices"][0]["message"]["content"].endswith("/ 1024 False")
    long_question = "Is the <bbox> here " + "very " * 700 + "long?"  # 300 + 3,530 prompt tokens (fake count)
    [response] = post_all(app, [chat_body(url_of(videos), long_question, max_tokens=1000)])
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "maximum context length is 4096 tokens" in error["message"]
    [response] = post_all(app, [chat_body(url_of(videos), long_question)])  # no max_tokens: shrinks to fit
    fits = 4096 - referrer.count_prompt_tokens(long_question)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"].endswith(f"/ {fits} False")


@pytest.mark.parametrize("field, value", [
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "required"),
    ("response_format", {"type": "json_object"}), ("presence_penalty", 0.5), ("frequency_penalty", 1.0),
    ("logit_bias", {"50256": -100}), ("functions", [{"name": "f"}]), ("audio", {"voice": "x"}),
])
def test_unsupported_openai_fields_are_refused_as_not_supported(served, field, value):
    app, referrer, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), **{field: value})])
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == field and error["code"] == "unsupported_parameter"
    assert "not supported" in error["message"] and "typo" not in error["message"]
    assert referrer.batches == []


def test_neutral_values_of_unsupported_fields_are_accepted(served):
    app, _, videos, _ = served
    body = chat_body(url_of(videos), tools=[], tool_choice="none", presence_penalty=0, frequency_penalty=0.0,
                     logit_bias={}, response_format={"type": "text"}, store=False, parallel_tool_calls=True, user="u1")
    [response] = post_all(app, [body])
    assert response.status_code == 200, response.text


def test_n_samples_stop_and_logprobs(served):
    app, referrer, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), n=3, temperature=0.8, seed=5)])
    choices = response.json()["choices"]
    assert response.status_code == 200 and [c["index"] for c in choices] == [0, 1, 2]
    assert sorted(q.sample for q in referrer.queries) == [0, 1, 2]  # each its own sample
    assert response.json()["usage"]["completion_tokens"] == 21
    referrer.queries.clear()
    [response] = post_all(app, [chat_body(url_of(videos), n=2)])  # greedy: alike, generated once
    assert len(response.json()["choices"]) == 2 and len(referrer.queries) == 1
    [response] = post_all(app, [chat_body(url_of(videos), stop=["doing"])])
    assert response.json()["choices"][0]["message"]["content"] == "0 turns: What is the <bbox>"
    assert list(referrer.queries[-1].stop) == ["doing"]
    [response] = post_all(app, [chat_body(url_of(videos), logprobs=True, top_logprobs=2)])
    content = response.json()["choices"][0]["logprobs"]["content"]
    assert content[0] == {"token": "0", "logprob": -0.5, "bytes": [48], "top_logprobs": []}
    assert referrer.queries[-1].top_logprobs == 2


def test_streamed_answer_is_openai_chunks_then_done(served):
    app, _, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), stream=True, stream_options={"include_usage": True})])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:] if c["choices"]]
    assert "".join(p or "" for p in pieces) == f"0 turns: {QUESTION} / 1024 False"
    assert len([p for p in pieces if p]) == len(f"0 turns: {QUESTION} / 1024 False".split(" "))  # word by word
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 107


def test_a_stream_keeps_the_connection_alive_while_its_video_is_prepared(tmp_path):
    referrer = FakeReferrer()
    referrer.prepare_s = 0.6
    app, _, videos = make_app(tmp_path, referrer, keepalive_s=0.05)
    try:
        [response] = post_all(app, [chat_body(url_of(videos), stream=True)])
        blocks = [b for b in response.text.split("\n\n") if b]
        assert blocks[0].startswith("data: ") and '"role": "assistant"' in blocks[0]  # the role chunk first
        progress = [json.loads(b[len(": artemis "):]) for b in blocks if b.startswith(": artemis ")]
        assert progress and progress[0]["stage"] == "track" and progress == sorted(progress, key=lambda p: p["progress"])
        assert any(b == ": keep-alive" for b in blocks)
        first_content = next(i for i, b in enumerate(blocks) if '"content": "0"' in b)
        assert all(b.startswith(":") for b in blocks[1:first_content])
    finally:
        app.state.queue.close(timeout=5)


def test_a_stream_whose_model_call_fails_ends_with_an_error_event_and_sends_nothing_twice(served):
    app, _, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), "explode the <bbox>", stream=True)])
    events = events_of(response)
    assert events[-1] == "[DONE]" and events[-2]["error"]["type"] == "server_error"
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-2] if isinstance(e, dict) and e.get("choices")]
    assert [c for c in contents if c] == ["partial "]  # the batch ran twice (batch, then alone): sent once


def test_relay_hands_on_each_piece_once_across_reruns():
    sent: list[str] = []
    relay = Relay(sent.append, threading.Event())
    for piece in ("The", " man"):
        relay(piece)
    relay.restart()
    for piece in ("The", " man", " walks"):
        relay(piece)
    assert sent == ["The", " man", " walks"]


def test_preparations_are_bounded_busy_requests_get_503_and_a_stop_cancels_them(tmp_path):
    referrer = FakeReferrer()
    referrer.gate = threading.Event()
    app, _, videos = make_app(tmp_path, referrer, prepare_workers=1, max_waiting_prepare=1, prepare_timeout_s=60)
    try:
        boxes = [[10, 10, 50, 50 + i] for i in range(4)]  # four new targets at once: one runs, one waits
        results: list = []
        worker = threading.Thread(target=lambda: results.extend(
            post_all(app, [chat_body(url_of(videos), box=b) for b in boxes])))
        worker.start()
        deadline = time.monotonic() + 20
        while app.state.preparer.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert app.state.preparer.pending == 2
        app.state.stopping.set()
        app.state.preparer.close(wait=False)  # what SIGTERM does: the one running stops at its next check
        worker.join(30)
        statuses = sorted(r.status_code for r in results)
        assert statuses == [503, 503, 503, 503], [(r.status_code, r.text) for r in results]
        busy = [r for r in results if r.json()["error"]["code"] == "server_busy"]
        assert len(busy) == 2 and all(r.headers.get("retry-after") for r in busy)
        assert referrer.prepared == []
    finally:
        referrer.gate.set()
        app.state.queue.close(timeout=5)


def test_a_preparation_past_its_time_limit_is_a_400(tmp_path):
    referrer = FakeReferrer()
    referrer.gate = threading.Event()
    app, _, videos = make_app(tmp_path, referrer, prepare_timeout_s=0.5)
    try:
        start = time.perf_counter()
        [response] = post_all(app, [chat_body(url_of(videos))])
        assert response.status_code == 400 and response.json()["error"]["code"] == "prepare_timeout"
        assert "--prepare-timeout" in response.json()["error"]["message"] and time.perf_counter() - start < 10
    finally:
        referrer.gate.set()
        app.state.queue.close(timeout=5)


def test_openapi_describes_the_target_extension_and_docs_are_served(served):
    app, _, _, _ = served
    schema = get(app, "/openapi.json").json()
    request = schema["components"]["schemas"]["ChatRequest"]
    assert {"box", "frame", "keys", "record", "data_root"} <= set(request["properties"])
    assert "pixels" in request["properties"]["box"]["description"]
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["example"]["box"]
    assert "/v1/models/{model_id}" in schema["paths"]
    docs = get(app, "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_prepared_record_is_answered_without_tracking_and_its_paths_are_checked(served, sample):
    import json as _json

    from artemis_cli.data.layout import ARTEMIS_DATA

    app, referrer, _, tmp_path = served
    root = (sample.data_root / ARTEMIS_DATA).resolve()
    files = sorted(sample.annotations.rglob("*.json"))
    record = next(r for f in files if "videorefbench" in str(f) for r in _json.loads(f.read_text()))
    allowed = build_app(referrer, AppSettings(allow_paths=[root], upload_dir=tmp_path / "unused", access_log=None))
    try:
        body = {"model": "fake-artemis", "messages": [{"role": "user", "content": QUESTION}], "record": record,
                "data_root": str(root)}
        [response] = post_all(allowed, [body])
        assert response.status_code == 200, response.text
        assert referrer.prepared == []  # no tracking: the record's track list is used
        [response] = post_all(allowed, [dict(body, record={k: v for k, v in record.items() if k != "track_list"})])
        assert response.status_code == 400 and "record.track_list" in response.json()["error"]["message"]
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / "f.pkl").write_bytes(b"x")
        escapes = [dict(body, record=dict(record, clip_path="HC-STVG/clip_feature/missing.pkl")),
                   dict(body, record=dict(record, clip_path=str(secret / "f.pkl"))),
                   dict(body, record=dict(record, clip_path="../" * 12 + str(secret / "f.pkl").lstrip("/"))),
                   dict(body, record=dict(record, frame_path=str(secret))),
                   dict(body, record=dict(record, frame_id=["../" * 12 + "etc/passwd"] + record["frame_id"][1:])),
                   dict(body, data_root="/"), dict(body, data_root=str(root / "nothing"))]
        answers = post_all(allowed, escapes)
        assert [r.status_code for r in answers] == [403] * len(escapes), [r.text for r in answers]
        messages = {r.json()["error"]["message"].split(": ", 1)[1] for r in answers}
        assert messages == {"not found, or outside the folders this server may read (--allow-path)"}
        assert all(str(root) not in r.text and str(secret) not in r.text for r in answers)
        os.mkfifo(root / "pipe.pkl")
        try:
            start = time.perf_counter()
            [response] = post_all(allowed, [dict(body, record=dict(record, clip_path="pipe.pkl"))])
            assert response.status_code == 403 and time.perf_counter() - start < 5
        finally:
            (root / "pipe.pkl").unlink()
        assert len(referrer.batches) == 1
    finally:
        allowed.state.queue.close(timeout=5)


def test_a_known_target_skips_prepare_and_a_bad_box_on_a_known_video_is_refused_at_once(served):
    app, referrer, videos, _ = served
    responses = post_all(app, [chat_body(url_of(videos))])
    assert responses[0].status_code == 200 and len(referrer.prepared) == 1
    responses = post_all(app, [chat_body(url_of(videos), "Where does the <bbox> go?")])
    assert responses[0].status_code == 200 and len(referrer.prepared) == 1  # the memo, not Referrer.prepare
    for change, words in (({"box": [10, 10, 500, 50]}, "outside frame 0"), ({"frame": 10}, "has 10 frame(s)")):
        [response] = post_all(app, [chat_body(url_of(videos), **change)])
        assert response.status_code == 400 and words in response.json()["error"]["message"], response.text
    assert len(referrer.prepared) == 1
    (videos / "clip.mp4").write_bytes(b"another video, same name")  # a changed file is prepared again
    assert post_all(app, [chat_body(url_of(videos))])[0].status_code == 200 and len(referrer.prepared) == 2


def test_more_key_boxes_in_the_request_reach_the_tracker(served):
    app, referrer, videos, _ = served
    body = chat_body(url_of(videos), keys=[{"frame": 30, "box": [100, 20, 160, 90]}])
    [response] = post_all(app, [body])
    assert response.status_code == 200, response.text
    assert referrer.prepared[-1].more == ((30, (100.0, 20.0, 160.0, 90.0)),)
    [again] = post_all(app, [chat_body(url_of(videos))])  # the same box without the key is another target
    assert again.status_code == 200 and referrer.prepared[-1].more == ()
    [bad] = post_all(app, [chat_body(url_of(videos), keys=[{"frame": 30, "box": [1, 2, 3]}])])
    assert bad.status_code == 400 and "keys" in bad.json()["error"]["message"]


def test_the_access_log_has_one_line_per_request_and_never_the_key(tmp_path):
    lines: list[str] = []
    app, _, videos = make_app(tmp_path, api_key=KEY, access_log=lines.append)
    try:
        post_all(app, [chat_body(url_of(videos))], headers={"authorization": f"Bearer {KEY}"})
        post_all(app, [chat_body(url_of(videos))], headers={"authorization": "Bearer not-the-key-42"})
        get(app, "/health")
        assert len(lines) == 3
        assert '"POST /v1/chat/completions HTTP/1.1" 200' in lines[0] and '" 401 ' in lines[1]
        assert '"GET /health HTTP/1.1" 200' in lines[2]
        assert not any(KEY in line or "not-the-key" in line for line in lines)
    finally:
        app.state.queue.close(timeout=5)
