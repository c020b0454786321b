"""The `artemis serve` app in process, over a fake referrer: routes, key check, error bodies and
statuses, size limit, data: URLs, prepared records, streaming, and a model failure that stays one
request's 500. (The real model behind the openai client: tests/test_serve.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import httpx
import pytest

from artemis_cli.errors import UsageError
from artemis_cli.ownvideo.referrer import Answer, PreparedTarget, check_question
from artemis_cli.serve.app import AppSettings, build_app

QUESTION = "What is the <bbox> doing in this video?"
KEY = "test-key-0123456789"


class FakeReferrer:
    """Frames are 320x180; answers echo the question; a question with 'explode' crashes the model call."""

    model_name = "fake-artemis"

    def __init__(self):
        self.batches: list[list[str]] = []
        self.prepared: list = []
        self.lock = threading.Lock()

    def prepare(self, target):
        x1, y1, x2, y2 = target.box
        if x1 < 0 or y1 < 0 or x2 > 320 or y2 > 180:
            raise UsageError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: outside frame {target.frame} (320x180 px)")
        self.prepared.append(target)
        return PreparedTarget(target=target, record={}, root=Path("."), frame_size=(320, 180), num_frames=10,
                              timings={})

    def ask_many(self, items, decoding=None):
        with self.lock:
            self.batches.append([question for _, question, _ in items])
        if any("explode" in question for _, question, _ in items):
            raise RuntimeError("CUDA error: device-side assert")
        out = []
        for prepared, question, history in items:
            check_question(question, history)
            words = f"{len(history)} turns: {question} / {decoding.max_new_tokens} {decoding.sample}"
            out.append(Answer(answer=words, question=question, frames_used=[0] * 9, prompt_tokens=100,
                              completion_tokens=7, timings={"inputs": 0.0, "generate": 0.01}))
        return out


def chat_body(url="file:///ALLOWED/clip.mp4", question=QUESTION, **extra):
    body = {"model": "fake-artemis", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}]}],
        "box": [10, 10, 50, 50], "frame": 0}
    body.update(extra)
    return body


@pytest.fixture
def served(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"not decoded by the fake")
    referrer = FakeReferrer()
    settings = AppSettings(api_key=None, allow_paths=[videos.resolve()], upload_dir=tmp_path / "uploads",
                           max_request_bytes=20_000, max_batch=8, batch_wait_s=0.3)
    app = build_app(referrer, settings)
    yield app, referrer, videos, settings
    app.state.queue.close(timeout=5)


def post_all(app, bodies, headers=None, raw=None):
    """POST every body at once (so they can share a batch); returns the httpx responses."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if raw is not None:
                return [await client.post("/v1/chat/completions", content=raw, headers=headers)]
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=b, headers=headers) for b in bodies))

    return asyncio.run(main())


def get(app, path, headers=None):
    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(main())


def url_of(videos: Path) -> str:
    return (videos / "clip.mp4").resolve().as_uri()


def test_answer_usage_models_and_health(served):
    app, referrer, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), max_tokens=12)])
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "fake-artemis"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": f"0 turns: {QUESTION} / 12 False"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    assert data["artemis"]["batch_size"] == 1 and len(data["artemis"]["frames_used"]) == 9
    assert referrer.prepared[0].video == videos.resolve() / "clip.mp4" and referrer.prepared[0].box == (10, 10, 50, 50)
    assert get(app, "/v1/models").json()["data"][0]["id"] == "fake-artemis"
    assert get(app, "/health").json()["status"] == "ok"


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
    ({"n": 2}, 400, "n:"),
    ({"url": "https://example.com/v.mp4"}, 400, "https URLs are not read"),
    ({"url": "file:///etc/passwd"}, 403, "outside the folders the server may read"),
    ({"url": "data:video/mp4;base64,@@@"}, 400, "not valid base64"),
    ({"url": "data:image/png;base64,AAAA"}, 400, "unsupported type image/png"),
    ({"messages": [{"role": "system", "content": "be brief"}]}, 400, "system messages are not supported"),
    ({"messages": [{"role": "user", "content": QUESTION}]}, 400, "the video is missing"),
])
def test_bad_requests_get_their_4xx_with_an_openai_error_body(served, change, status, words):
    app, referrer, videos, _ = served
    change = dict(change)
    body = chat_body(change.pop("url", url_of(videos)), change.pop("question", QUESTION))
    body.update(change)
    if body.get("box") is None:
        body.pop("box")
    [response] = post_all(app, [body])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert referrer.batches == []  # nothing reached the model


def test_bad_json_and_oversized_bodies(served):
    app, _, videos, settings = served
    [response] = post_all(app, [], raw=b'{"model": "fake-artemis", "messages": [', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    big = chat_body(url_of(videos), QUESTION + " " + "x" * settings.max_request_bytes)
    [response] = post_all(app, [big])
    assert response.status_code == 413 and "--max-request-mb" in response.json()["error"]["message"]
    assert get(app, "/v1/nothing").status_code == 404 and "error" in get(app, "/v1/nothing").json()


def test_no_allow_path_means_no_local_files(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    app = build_app(FakeReferrer(), AppSettings(upload_dir=tmp_path / "uploads"))
    try:
        [response] = post_all(app, [chat_body((tmp_path / "clip.mp4").as_uri())])
        assert response.status_code == 403 and "--allow-path" in response.json()["error"]["message"]
    finally:
        app.state.queue.close(timeout=5)


def test_a_data_url_video_is_stored_once_by_content(served):
    app, referrer, _, settings = served
    payload = b"\x00\x00\x00\x18ftypmp42 fake video bytes"
    url = "data:video/mp4;base64," + base64.b64encode(payload).decode()
    responses = post_all(app, [chat_body(url), chat_body(url)])
    assert [r.status_code for r in responses] == [200, 200]
    stored = list(settings.upload_dir.iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".mp4" and stored[0].read_bytes() == payload
    assert {t.video for t in referrer.prepared} == {stored[0]}


def test_the_key_is_required_checked_and_never_echoed(served):
    app, _, videos, _ = served
    app_with_key = build_app(FakeReferrer(), AppSettings(api_key=KEY, allow_paths=[videos.resolve()],
                                                         upload_dir=videos / "up"))
    try:
        for headers in (None, {"authorization": "Bearer wrong-key-123"}, {"authorization": KEY}):
            [response] = post_all(app_with_key, [chat_body(url_of(videos))], headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
            assert "wrong-key-123" not in response.text and KEY not in response.text
        assert get(app_with_key, "/v1/models").status_code == 401
        assert get(app_with_key, "/health").status_code == 200  # for load balancers: no key, no details
        [response] = post_all(app_with_key, [chat_body(url_of(videos))], headers={"authorization": f"Bearer {KEY}"})
        assert response.status_code == 200
    finally:
        app_with_key.state.queue.close(timeout=5)


def test_history_and_sampling_fields_reach_the_referrer(served):
    app, _, videos, _ = served
    body = chat_body(url_of(videos), QUESTION, temperature=0.7, top_p=0.9, seed=3, max_completion_tokens=5)
    body["messages"] += [{"role": "assistant", "content": "It walks."}, {"role": "user", "content": "Where to?"}]
    [response] = post_all(app, [body])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "1 turns: Where to? / 5 True"
    body["messages"][-1]["content"] = "Where does the <bbox> go?"  # a follow-up must not re-point
    [response] = post_all(app, [body])
    assert response.status_code == 400 and "follow-up" in response.json()["error"]["message"]


def test_streamed_answer_is_openai_chunks_then_done(served):
    app, _, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), stream=True, stream_options={"include_usage": True})])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        f"0 turns: {QUESTION} / 1024 False"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 107


def test_a_stream_whose_model_call_fails_ends_with_an_error_event(served):
    app, _, videos, _ = served
    [response] = post_all(app, [chat_body(url_of(videos), "explode the <bbox>", stream=True)])
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["type"] == "server_error"


def test_a_prepared_record_is_answered_without_tracking(served, sample):
    import json as _json

    from artemis_cli.data.layout import ARTEMIS_DATA

    app, referrer, _, _ = served
    root = (sample.data_root / ARTEMIS_DATA).resolve()
    files = sorted(sample.annotations.rglob("*.json"))
    record = next(r for f in files if "videorefbench" in str(f) for r in _json.loads(f.read_text()))
    allowed = build_app(referrer, AppSettings(allow_paths=[root], upload_dir=root / "unused"))
    try:
        body = {"model": "fake-artemis", "messages": [{"role": "user", "content": QUESTION}], "record": record,
                "data_root": str(root)}
        [response] = post_all(allowed, [body])
        assert response.status_code == 200, response.text
        assert referrer.prepared == []  # no tracking: the record's track list is used
        broken = dict(record, clip_path="HC-STVG/clip_feature/missing.pkl")
        [response] = post_all(allowed, [dict(body, record=broken)])
        assert response.status_code == 400 and "record.clip_path" in response.json()["error"]["message"]
        [response] = post_all(allowed, [dict(body, record={k: v for k, v in record.items() if k != "track_list"})])
        assert response.status_code == 400 and "record.track_list" in response.json()["error"]["message"]
        [response] = post_all(allowed, [dict(body, data_root="/")])
        assert response.status_code == 403
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
    [bad] = post_all(app, [chat_body(url_of(videos), keys=[{"frame": 30, "box": [1, 2, 3]}])])
    assert bad.status_code == 400 and "keys" in bad.json()["error"]["message"]
