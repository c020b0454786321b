"""`artemis serve` as a subprocess on a free loopback port, driven by the `openai` client: answers equal
the `Referrer` in process (and `infer videorefbench` for a prepared record), batched equals alone under
greedy decoding, streaming, bad requests answered with their 4xx while the server keeps serving,
SIGTERM with requests in flight loses none, a non-loopback host without a key is refused."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ownvideo_helpers import MAX_NEW, video_file

pytestmark = pytest.mark.slow
QUESTION = "What is the <bbox> doing in this video?"
KEY = "serve-test-key-5f2c9a"


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
                     "--max-batch", "8", "--batch-wait-ms", "500", "--max-new-tokens", str(MAX_NEW), "--max-request-mb", "1"],
                    env={"ARTEMIS_API_KEY": ""})
    server.cache = cache
    yield server
    assert server.stop() == 0, server.stderr


def ask(client, clip, box, question=QUESTION, **kwargs):
    return client.chat.completions.create(
        model="artemis", messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": clip[0] if isinstance(clip[0], str) else clip[0].resolve().as_uri()}},
            {"type": "text", "text": question}]}],
        extra_body={"box": [float(v) for v in box], "frame": kwargs.pop("frame", 0)}, **kwargs)


def boxes(clip, frame=0):
    return {name: obj.boxes[frame] for name, obj in clip[1].objects.items()}


def test_an_answer_through_the_openai_client_is_the_referrers(server, sharp, clip, tmp_path):
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.ownvideo.referrer import Referrer, Target

    client = server.client()
    assert [m.id for m in client.models.list().data] == ["artemis"]
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
    with pytest.raises(openai.PermissionDeniedError, match="--allow-path"):
        ask(client, (outside, clip[1]), walker)
    bad_json = httpx.post(f"{server.url}/chat/completions", content=b"{not json", timeout=30)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    huge = httpx.post(f"{server.url}/chat/completions", content=b" " * 1_500_000, timeout=60)
    assert huge.status_code == 413 and "--max-request-mb" in huge.json()["error"]["message"]
    # still serving; a data: URL of the same bytes is the same video (the caches key on content)
    by_file = ask(client, clip, walker).choices[0].message.content
    upload = "data:video/mp4;base64," + base64.b64encode(clip[0].read_bytes()).decode()
    assert ask(client, (upload, None), walker).choices[0].message.content == by_file
    assert len(list((server.cache / "uploads").iterdir())) == 1


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
        model="artemis", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"record": record, "data_root": str(sample.data_root / ARTEMIS_DATA)})
    assert response.choices[0].message.content == expected


def test_sigterm_with_requests_in_flight_answers_them_all_and_exits_0(server, sharp, clip):
    import httpx

    from artemis_cli.ownvideo.referrer import Referrer, Target

    cache = server.cache  # (the module's server keeps running: this is a second one)
    warm = Referrer(loaded=sharp[1], cache_dir=cache)  # tracks and features on disk (hits after the tests
    for box in boxes(clip).values():  # above), so the server's requests are queued within milliseconds
        warm.prepare(Target(clip[0].resolve(), tuple(float(v) for v in box), 0))
    server = Server(["--model", str(sharp[0]), "--allow-path", str(clip[0].parent), "--cache-dir", str(cache),
                     "--device", "cpu", "--batch-wait-ms", "3000", "--max-new-tokens", str(MAX_NEW)],
                    env={"ARTEMIS_API_KEY": KEY})
    try:
        client = server.client(api_key=KEY)
        cases = list(boxes(clip).values()) * 2
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = [pool.submit(ask, client, clip, box) for box in cases]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # all queued (prepared), none answered yet
                health = httpx.get(f"{server.url.removesuffix('/v1')}/health", timeout=10).json()
                if health["in_flight"] == len(cases) or any(f.done() for f in futures):
                    break
                time.sleep(0.05)
            assert not any(f.done() for f in futures) and health["in_flight"] == len(cases)
            server.proc.send_signal(signal.SIGTERM)
            answers = [f.result(timeout=120) for f in futures]
        assert all(a.choices[0].message.content for a in answers)
        assert server.proc.wait(60) == 0
        assert "stopped (SIGTERM)" in server.stderr and f"{len(cases)} request(s) answered" in server.stderr
        assert KEY not in server.stderr
    finally:
        server.stop(signal.SIGKILL)


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
