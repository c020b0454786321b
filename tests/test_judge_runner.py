"""The `judge` library entry: injected clients, retry policy, cache, torn output, kill-and-resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import pytest

from artemis_cli.errors import InputError
from artemis_cli.judge import JudgeOptions, judge, pin_warning
from artemis_cli.judge.client import RetryPolicy, call_judge, retry_after_seconds
from judge_server import FakeJudgeServer

REPO = Path(__file__).resolve().parents[1]


class ScriptedClient:
    """An injected client (no HTTP): `replies[pred]` is the list of contents it returns in turn."""

    def __init__(self, replies: dict[str, list[str]]):
        self.replies = {key: list(value) for key, value in replies.items()}
        self.calls: list[str] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, model: str, messages: list[dict], **kwargs):
        pred = messages[-1]["content"].split("Predicted answer: ")[1].split("\n")[0]
        self.calls.append(pred)
        content = self.replies[pred].pop(0) if len(self.replies[pred]) > 1 else self.replies[pred][0]
        message = SimpleNamespace(content=content)
        return SimpleNamespace(model=model + "-served", choices=[SimpleNamespace(message=message)],
                               usage=SimpleNamespace(prompt_tokens=10, completion_tokens=2))


def options(tmp_path: Path, **overrides) -> JudgeOptions:
    values = dict(task="correctness", model="judge-m", cache_dir=tmp_path / "cache", output_dir=tmp_path / "out",
                  retry_base_delay=0.0, show_progress=False)
    values.update(overrides)
    return JudgeOptions(**values)


def test_injected_client_records_and_identical_items_share_one_call(tmp_path):
    records = [{"video_name": "v", "Q": "q", "A": "a", "pred": "same"},
               {"video_name": "v", "Q": "q", "A": "a", "pred": "same"},
               {"video_name": "w", "Q": "q", "A": "a", "pred": "other"},
               {"video_name": "x", "Q": "q", "A": "a", "pred": "never"}]
    client = ScriptedClient({"same": ['{"score": 2}'], "other": ["junk", '{"score": 5}'], "never": ["{}"]})
    summary = judge(records, options(tmp_path, max_attempts=3), client=client)
    assert sorted(client.calls) == ["never"] * 3 + ["other"] * 2 + ["same"]
    assert (summary.n_judged, summary.n_failed, summary.n_cached, summary.n_calls) == (3, 1, 1, 6)
    assert summary.failed_ids == ["x_0"] and summary.mean_score == pytest.approx(3.0)
    assert summary.failures[0]["raw_reply"] == "{}" and "no 'score' key" in summary.failures[0]["error"]
    assert summary.usage == {"prompt_tokens": 60, "completion_tokens": 12}  # every attempt is paid
    lines = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == ["v_0", "v_1", "w_0", "x_0"]
    assert {r["served_model"] for r in lines if r["status"] == "judged"} == {"judge-m-served"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_calls"] == 6 and manifest["model"] == "judge-m"


def test_torn_last_line_is_redone_and_unknown_errors_propagate(tmp_path):
    records = [{"video_name": f"v{i}", "Q": "q", "A": "a", "pred": f"p{i}"} for i in range(3)]
    client = ScriptedClient({f"p{i}": ['{"score": 1}'] for i in range(3)})
    judge(records, options(tmp_path, cache_dir=tmp_path / "c1"), client=client)
    path = tmp_path / "out" / "judgments.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1] + lines[2][:15])  # a kill in the middle of the last write
    client.calls.clear()
    summary = judge(records, options(tmp_path, cache_dir=tmp_path / "c2"), client=client)  # empty cache
    assert len(client.calls) == 1 and summary.n_judged == 3 and summary.n_cached == 2
    assert len(path.read_text().splitlines()) == 3

    class Broken:
        chat = SimpleNamespace(completions=SimpleNamespace(create=lambda **kw: 1 / 0))

    with pytest.raises(ZeroDivisionError):
        judge(records, options(tmp_path, cache_dir=tmp_path / "c3", output_dir=tmp_path / "o3"), client=Broken())


def test_corrupt_cache_is_an_input_error(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "judge_cache.sqlite").write_bytes(b"this is not sqlite" * 100)
    client = ScriptedClient({"p": ['{"score": 1}']})
    with pytest.raises(InputError, match="not a usable judge cache"):
        judge([{"video_name": "v", "Q": "q", "A": "a", "pred": "p"}], options(tmp_path), client=client)


def test_retry_policy_and_retry_after():
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0)
    rng = random.Random(0)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (40, 3.0)):
        delays = [policy.backoff(failures, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1  # jittered
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 28 <= retry_after_seconds({"retry-after": formatdate(time.time() + 30, usegmt=True)}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_retry_after_is_capped_and_attempts_are_capped(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    from artemis_cli.judge.client import make_client

    with FakeJudgeServer("k") as srv:
        srv.scripts["a"] = [("status", 429, {"Retry-After": "3600"})] * 10
        client = make_client(srv.base_url, timeout=5, api_key="k")
        start = time.monotonic()
        outcome = call_judge(client, "m", [{"role": "user", "content": "[[a]]"}], "detail",
                             RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.2), threading.Event(),
                             random.Random(0))
        elapsed = time.monotonic() - start
    assert outcome.verdict is None and outcome.attempts == 3 and srv.requests["a"] == 3
    assert "RateLimitError (429)" in outcome.error and len(outcome.errors) == 3
    assert 0.35 <= elapsed < 2.0  # two waits of max_delay, not an hour


def test_pin_warning():
    assert "unpinned" in pin_warning("gpt-4o")
    for pinned in ("gpt-4.1-2025-04-14", "claude-x-20240620", "llama-3.3-70b@20250101"):
        assert pin_warning(pinned) is None
    for retired in ("gpt-3.5-turbo", "gpt-3.5-turbo-0125"):  # a known retirement is said, alias or not
        assert "retired on 2026-10-23" in pin_warning(retired)


def test_kill_and_resume(monkeypatch, tmp_path):
    key = f"sk-test-{uuid.uuid4().hex}"
    n_items, answered_before_kill = 20, 8
    preds = tmp_path / "qa.jsonl"
    preds.write_text("".join(json.dumps({"id": f"q{i:02d}", "question": "q", "answer": "a",
                                         "pred": f"p [[q{i:02d}]]"}) + "\n" for i in range(n_items)))
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "OPENAI_API_KEY": key, "PYTHONPATH": str(REPO), "NO_PROXY": "127.0.0.1,localhost"}
    with FakeJudgeServer(key) as srv:
        for i in range(n_items):
            srv.answers[f"q{i:02d}"] = json.dumps({"pred": "yes" if i % 2 else "no", "score": i % 5})
        srv.hold_after = answered_before_kill  # later requests hang until the process is killed
        args = ["judge", "gpt", str(preds), "--task", "qa", "--base-url", srv.base_url, "--cache", str(cache),
                "--output", str(out), "--concurrency", "2", "--timeout", "30", "--json", "--model", "judge-m"]
        log = (tmp_path / "run.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "artemis_cli", *args], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            written = (out / "judgments.jsonl").read_text().count("\n") if (out / "judgments.jsonl").exists() else 0
            if written >= answered_before_kill and srv.in_flight >= 2:
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            time.sleep(0.05)
        else:
            pytest.fail("the judge run did not reach the kill point")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.close()
        first = {item for item, count in srv.answered.items() if count}
        assert len(first) == answered_before_kill
        srv.hold_after = None
        srv.release.set()

        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        from typer.testing import CliRunner

        from artemis_cli.cli.app import app

        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_judged"] == n_items and summary["n_cached"] == answered_before_kill
    assert summary["accuracy"] == 0.5 and summary["mean_score"] == pytest.approx(2.0)
    assert all(srv.answered[f"q{i:02d}"] == 1 for i in range(n_items))  # nobody paid twice
    assert all(srv.requests[item] == 1 for item in first)  # finished items were not asked again
    assert len((out / "judgments.jsonl").read_text().splitlines()) == n_items
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
