"""`artemis judge gpt` end to end: the real openai client against a local OpenAI-compatible server.

The server (tests/judge_server.py) injects 429 + Retry-After, 500s, a reply slower than the
timeout, malformed and out-of-range replies and code fences, and counts requests per item.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.judge import SUMMARY_KEYS
from judge_server import FakeJudgeServer

FAST = ["--retry-base-delay", "0.01", "--retry-max-delay", "2", "--timeout", "0.5"]
MODEL = ["--model", "judge-2025-01-01"]  # a dated name: the fake server serves it as it is


@pytest.fixture
def api_key(monkeypatch, tmp_path):
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("ARTEMIS_CACHE", str(tmp_path / "default-cache"))  # never the user's home
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return key


@pytest.fixture
def server(api_key):
    with FakeJudgeServer(api_key) as srv:
        yield srv


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def qa_records(n: int) -> list[dict]:
    return [{"id": f"q{i:02d}", "question": f"what happens {i}?", "answer": f"event {i}",
             "pred": f"something [[q{i:02d}]]"} for i in range(n)]


def invoke(args: list[str]):
    result = CliRunner().invoke(app, ["judge", "gpt", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_key_absent(key: str, *places: Path, texts: tuple[str, ...] = ()) -> None:
    for place in places:
        for path in [place] if place.is_file() else place.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), f"API key written to {path}"
    for text in texts:
        assert key not in text


def test_qa_with_injected_faults(server, api_key, tmp_path):
    preds = write_jsonl(tmp_path / "qa.jsonl", qa_records(12))
    verdicts = {f"q{i:02d}": ("yes" if i % 3 else "no", i % 6) for i in range(12)}
    for item, (pred, score) in verdicts.items():
        server.answers[item] = json.dumps({"pred": pred, "score": score})
    server.answers["q06"] = '```json\n{"pred": "yes", "score": 4.8}\n```'
    verdicts["q06"] = ("yes", 4.8)
    server.answers["q09"] = "{'pred': 'no', 'score': 2}"
    verdicts["q09"] = ("no", 2)
    server.scripts.update({
        "q01": [("status", 429, {"Retry-After": "1"})],
        "q02": [("status", 500, {}), ("status", 503, {})],
        "q03": [("slow", 1.2)],
        "q04": [("reply", "The answer is yes.")],
        "q05": [("reply", '{"pred": "yes", "score": 7}')],
        "q07": [("reply", "yes!!!")] * 4,
        "q08": [("status", 500, {})] * 4,
        "q10": [("status", 429, {"retry-after-ms": "300"})],
    })
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [str(preds), "--task", "qa", "--base-url", server.base_url, "--cache", str(cache), "--output", str(out),
            "--max-attempts", "4", "--concurrency", "4", "--model", "gpt-3.5-turbo", *FAST]
    result = invoke([*args, "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert tuple(summary) == SUMMARY_KEYS
    judged = {k: v for k, v in verdicts.items() if k not in ("q07", "q08")}
    n_yes = sum(p == "yes" for p, _ in judged.values())
    assert summary == {
        "task": "qa", "model": "gpt-3.5-turbo", "base_url": server.base_url, "temperature": None,
        "prompt_hash": summary["prompt_hash"], "served_models": ["gpt-3.5-turbo-0125"], "n_items": 12,
        "n_judged": 10, "n_failed": 2, "n_cached": 0, "n_missing_predictions": None, "accuracy": n_yes / 10,
        "mean_score": sum(s for _, s in judged.values()) / 10, "score_max": 5,
        "mean_score_failures_as_zero": sum(s for _, s in judged.values()) / 12, "dimension_scores": None,
        "failed_ids": ["q07", "q08"],
    }
    assert len(summary["prompt_hash"]) == 16
    assert "retired on 2026-10-23" in result.stderr  # a known retirement is said up front
    assert json.loads((out / "summary.json").read_text()) == summary

    lines = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(lines) == 12 and set(by_id) == set(verdicts)
    for item, (pred, score) in judged.items():
        assert by_id[item]["status"] == "judged" and by_id[item]["verdict"] == {"pred": pred, "score": score}
        assert server.answered[item] == 1  # paid once
    assert by_id["q06"]["verdict"]["score"] == 4.8
    assert {k: by_id[k]["attempts"] for k in ("q00", "q01", "q02", "q03", "q04", "q05")} == \
        {"q00": 1, "q01": 2, "q02": 3, "q03": 2, "q04": 2, "q05": 2}
    assert by_id["q07"] == {**by_id["q07"], "status": "failed", "verdict": None, "attempts": 4, "raw_reply": "yes!!!"}
    assert "unusable reply" in by_id["q07"]["error"]
    assert by_id["q08"]["status"] == "failed" and "500" in by_id["q08"]["error"] and by_id["q08"]["attempts"] == 4
    assert server.requests["q07"] == 4 and server.requests["q08"] == 4 and server.answered["q07"] == 0
    gap = server.request_times["q01"][1] - server.request_times["q01"][0]
    assert gap >= 0.95, f"Retry-After: 1 not honoured ({gap:.2f}s)"
    assert server.request_times["q10"][1] - server.request_times["q10"][0] >= 0.28

    # Rerun: judged items cost nothing; the failed two are retried (their faults are used up now).
    server.reset_counts()
    result = invoke([*args, "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["n_judged"] == 12 and again["failed_ids"] == [] and again["n_cached"] == 10
    assert dict(server.requests) == {"q07": 1, "q08": 1}
    lines = (out / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line)["status"] == "judged" for line in lines)

    # A third run (even into a fresh output folder) makes no call at all: the cache answers.
    server.reset_counts()
    result = invoke([*args, "--output", str(tmp_path / "out2")])
    assert result.exit_code == 0, result.output
    assert server.total_requests == 0
    assert "calls made" in result.stdout and "12" in result.stdout
    assert_key_absent(api_key, tmp_path, texts=(result.output,))


def test_video_chatgpt_dimensions(server, tmp_path):
    records = [{"video_name": "v_a", "Q": "q0", "A": "a", "pred": "p [[v_a_0]]"},
               {"video_name": "v_a", "Q": "q1", "A": "a", "pred": "p [[v_a_1]]"},
               {"video_name": "v_b", "Q": "q2", "A": "a", "pred": "p [[v_b_0]]"}]
    preds = write_jsonl(tmp_path / "generic.jsonl", records)
    server.answers.update({"v_a_0": '{"score": 3}', "v_a_1": '{"score": 4.5}', "v_b_0": "```\n{\"score\": 1}\n```"})
    server.scripts["v_b_0"] = [("reply", '{"score": 6}')]
    base = ["--base-url", server.base_url, "--cache", str(tmp_path / "cache"), *FAST, "--json"]
    result = invoke([str(preds), "--task", "detail", "--model", "gpt-4o-2024-08-06", *base])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["accuracy"] is None and summary["mean_score"] == pytest.approx((3 + 4.5 + 1) / 3)
    assert summary["served_models"] == ["gpt-4o-2024-08-06"] and "unpinned" not in result.stderr
    assert (tmp_path / "generic.judge-detail-gpt-4o-2024-08-06" / "judgments.jsonl").exists()

    # Same items, another dimension: another prompt, so new cache keys and new calls.
    server.reset_counts()
    server.answers.update({"v_a_0": '{"score": 5}', "v_a_1": '{"score": 5}', "v_b_0": '{"score": 2}'})
    result = invoke([str(preds), "--task", "context", *MODEL, *base])
    assert json.loads(result.stdout)["mean_score"] == pytest.approx(4.0)
    assert server.total_requests == 3

    consistency = write_jsonl(tmp_path / "consistency.jsonl", [
        {"video_name": "v_c", "Q1": "what?", "Q2": "what exactly?", "A": "a", "pred1": "x [[c0]]", "pred2": "y"}])
    server.answers["c0"] = '{"score": 2}'
    result = invoke([str(consistency), "--task", "consistency", "--output", str(tmp_path / "c"), *MODEL, *base])
    assert result.exit_code == 0 and json.loads(result.stdout)["mean_score"] == 2
    line = json.loads((tmp_path / "c" / "judgments.jsonl").read_text())
    assert line["id"] == "v_c_0" and line["item"]["pred2"] == "y"


def test_model_prompt_change_dry_run_and_overwrite(server, tmp_path):
    preds = write_jsonl(tmp_path / "qa.jsonl", qa_records(4))
    for i in range(4):
        server.answers[f"q{i:02d}"] = '{"pred": "yes", "score": 5}'
    out, cache = tmp_path / "out", tmp_path / "cache"
    base = [str(preds), "--task", "qa", "--base-url", server.base_url, "--cache", str(cache), *FAST]

    result = invoke([*base, *MODEL, "--output", str(out), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"task": "qa", "model": "judge-2025-01-01", "n_items": 4, "n_cached": 0,
                                         "calls_needed": 4, "est_prompt_tokens": json.loads(result.stdout)[
                                             "est_prompt_tokens"], "est_completion_tokens": 56}
    assert json.loads(result.stdout)["est_prompt_tokens"] > 4 * 100
    assert server.total_requests == 0 and not out.exists()

    assert invoke([*base, *MODEL, "--output", str(out)]).exit_code == 0
    assert server.total_requests == 4
    dry = json.loads(invoke([*base, *MODEL, "--output", str(out), "--dry-run", "--json"]).stdout)
    assert dry["calls_needed"] == 0 and dry["n_cached"] == 4

    # Another model: new keys; its dry run counts every item, and the old output folder refuses to mix.
    other = [*base, "--model", "gpt-4o-mini-2024-07-18"]
    assert json.loads(invoke([*other, "--dry-run", "--json"]).stdout)["calls_needed"] == 4
    result = invoke([*other, "--output", str(out)])
    assert result.exit_code == 2 and "different model" in result.stderr and "--overwrite" in result.stderr
    server.reset_counts()
    assert invoke([*other, "--output", str(out), "--overwrite"]).exit_code == 0
    assert server.total_requests == 4

    # Another prompt: new keys too (the published prompt text pasted as-is works with our placeholders).
    prompt = tmp_path / "published.txt"
    prompt.write_text("Question: {question}\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n"
                      "For example, your response should look like this: {'pred': 'yes', 'score': 4.8}.")
    server.reset_counts()
    result = invoke([*base, *MODEL, "--output", str(tmp_path / "out3"), "--prompt-file", str(prompt), "--json"])
    assert result.exit_code == 0 and server.total_requests == 4
    server.reset_counts()
    assert invoke([*base, *MODEL, "--output", str(tmp_path / "out4"), "--prompt-file", str(prompt)]).exit_code == 0
    assert server.total_requests == 0


def test_concurrency_is_bounded(server, tmp_path):
    preds = write_jsonl(tmp_path / "qa.jsonl", qa_records(12))
    for i in range(12):
        server.answers[f"q{i:02d}"] = '{"pred": "no", "score": 1}'
    server.answer_delay = 0.1
    result = invoke([str(preds), "--task", "qa", "--base-url", server.base_url, "--cache", str(tmp_path / "c"),
                     "--concurrency", "3", *MODEL, *FAST, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] == 0.0
    assert 2 <= server.max_in_flight <= 3


def test_bad_key_aborts_and_is_redacted(monkeypatch, tmp_path):
    key = f"sk-wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    preds = write_jsonl(tmp_path / "qa.jsonl", qa_records(3))
    with FakeJudgeServer("sk-the-right-one") as srv:
        result = invoke([str(preds), "--task", "qa", "--base-url", srv.base_url, "--cache", str(tmp_path / "c"),
                         "--output", str(tmp_path / "out"), *MODEL, *FAST])
        assert srv.bad_auth >= 1
    assert result.exit_code == 1
    assert "error: the judge API refused the request" in result.stderr and "401" in result.stderr
    assert "***" in result.stderr and "hint: check OPENAI_API_KEY" in result.stderr
    assert_key_absent(key, tmp_path, texts=(result.output,))


def test_missing_key_and_bad_options(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ARTEMIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ARTEMIS_JUDGE_MODEL", raising=False)
    preds = write_jsonl(tmp_path / "qa.jsonl", qa_records(2))
    result = invoke([str(preds), "--task", "qa", "--dry-run"])  # no default judge: the user names one
    assert result.exit_code == 2 and result.stderr.startswith("error: no judge model: pass --model")
    assert "hint:" in result.stderr and "--base-url" in result.stderr and "Traceback" not in result.output
    monkeypatch.setenv("ARTEMIS_JUDGE_MODEL", "judge-from-env-2025-01-01")
    result = invoke([str(preds), "--task", "qa", "--dry-run", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["model"] == "judge-from-env-2025-01-01"
    result = invoke([str(preds), "--task", "qa", *MODEL])
    assert result.exit_code == 2 and "OPENAI_API_KEY is not set" in result.stderr
    result = invoke([str(preds), "--task", "qa", "--dry-run", *MODEL])
    assert result.exit_code == 0 and "calls needed" in result.stdout
    result = invoke([str(preds), "--task", "captions", *MODEL])
    assert result.exit_code == 2 and "--task 'captions'" in result.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"video_name": "v", "Q": "q", "A": "a"}])
    result = invoke([str(bad), "--task", "detail", *MODEL])
    assert result.exit_code == 1 and "bad.jsonl:1: pred: Field required" in result.stderr
