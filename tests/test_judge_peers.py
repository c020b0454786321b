"""The peers' judges (VideoRefer-Bench-D's four dimensions, PLM-VideoBench RCap's 0-10 score), judge
continuity (no default model, a retired or missing model said in one line, every output naming its judge)
and `artemis judge compare`, against the local fake OpenAI server (tests/judge_server.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.judge.compare import cohen_kappa, pearson, score_agreement
from judge_server import FakeJudgeServer

FAST = ["--retry-base-delay", "0.01", "--retry-max-delay", "0.2", "--timeout", "2", "--max-attempts", "3"]
MODEL = "judge-a-2025-01-01"


@pytest.fixture
def server(monkeypatch, tmp_path):
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("ARTEMIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ARTEMIS_JUDGE_MODEL", raising=False)
    with FakeJudgeServer(key) as srv:
        yield srv


def invoke(args: list):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def descriptions(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "video": f"v{i}.mp4", "caption": f"reference {i}",
                                        "pred": f"prediction {i} [[d{i}]]"}) + "\n" for i in range(n)))
    return path


def dims(sc, ad, td, hd, bold: bool = False) -> str:
    star = "**" if bold else ""
    names = ("Subject Correspondence", "Appearance Description", "Temporal Description", "Hallucination Detection")
    return "\n".join(f"{k}. {star}{name}{star}: {v}\nExplanation: fine." for k, (name, v)
                     in enumerate(zip(names, (sc, ad, td, hd)), start=1))


def test_bench_d_four_dimensions_failures_counted_and_protocol_recorded(server, tmp_path):
    preds = descriptions(tmp_path / "videorefer_d.jsonl", 4)
    server.answers.update({"d0": dims(4, 3, 2, 5), "d1": dims(2, 2, 1, 3, bold=True),
                           "d2": "1. Subject Correspondence: 4\nThe rest is fine."})  # three dimensions missing
    server.scripts["d3"] = [("status", 500, {})] * 3
    # ids infer was asked for: d4 failed there and has no prediction line
    (tmp_path / "videorefer_d.manifest.json").write_text(json.dumps({"input_ids": ["d0", "d1", "d2", "d3", "d4"]}))
    out = tmp_path / "judged"
    result = invoke(["judge", "gpt", preds, "--task", "videorefer-d", "--model", MODEL, "--base-url",
                     server.base_url, "-o", out, *FAST, "--json"])
    assert result.exit_code == 1, result.output  # two items failed
    summary = json.loads(result.stdout)
    assert (summary["n_items"], summary["n_judged"], summary["n_failed"]) == (4, 2, 2)
    assert summary["failed_ids"] == ["d2", "d3"] and summary["n_missing_predictions"] == 1
    assert summary["dimension_scores"] == {"Subject Correspondence": 3.0, "Appearance Description": 2.5,
                                           "Temporal Description": 1.5, "Hallucination Detection": 4.0}
    assert summary["mean_score"] == pytest.approx((3.5 + 2.0) / 2)
    assert summary["mean_score_failures_as_zero"] == pytest.approx((3.5 + 2.0) / 5)  # 2 failed + 1 missing as 0
    assert summary["temperature"] == 0.7 and summary["base_url"] == server.base_url and summary["model"] == MODEL
    body = server.bodies["d0"]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.95, 800)
    assert body["messages"][0]["content"].startswith("You are an advanced intelligent chatbot")
    assert body["messages"][1]["content"] == "##Correct answer: reference 0\n##Predicted answer: prediction 0 [[d0]]\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["request_params"] == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 800}
    assert manifest["prompt_hash"] == summary["prompt_hash"] and "VideoRefer" in manifest["protocol"]
    failed = {r["id"]: r for r in map(json.loads, (out / "judgments.jsonl").read_text().splitlines())
              if r["status"] == "failed"}
    assert "no score line for Appearance Description" in failed["d2"]["error"] and failed["d3"]["attempts"] == 3

    table = invoke(["judge", "gpt", preds, "--task", "videorefer-d", "--model", MODEL, "--base-url",
                    server.base_url, "-o", out, *FAST])  # the table (failed items retried, fail again)
    assert "Subject Correspondence" in table.stdout and "missing predictions" in table.stdout
    assert "failed/missing as 0" in table.stdout and "0.7" in table.stdout


def test_plm_rcap_zero_to_ten_and_non_json_counted(server, tmp_path):
    preds = descriptions(tmp_path / "rcap.jsonl", 3)
    server.answers.update({"d0": '{"score": 8, "explanation": "close"}', "d1": '{"score": 3, "explanation": "far"}',
                           "d2": "Score: 7/10"})
    result = invoke(["judge", "gpt", preds, "--task", "plm-rcap", "--model", MODEL, "--base-url", server.base_url,
                     *FAST, "--json"])
    summary = json.loads(result.stdout)
    assert result.exit_code == 1 and summary["score_max"] == 10 and summary["temperature"] == 0.0
    assert (summary["n_judged"], summary["n_failed"], summary["mean_score"]) == (2, 1, 5.5)
    assert summary["mean_score_failures_as_zero"] == pytest.approx(11 / 3)  # lmms-eval counts non-JSON as 0
    assert server.bodies["d0"]["max_tokens"] == 256 and "Ground truth caption: reference 0" in \
        server.bodies["d0"]["messages"][1]["content"]


def test_a_missing_model_is_one_error_line_naming_it(server, tmp_path):
    preds = descriptions(tmp_path / "d.jsonl", 2)
    server.gone_models.add("gpt-3.5-turbo-0125")
    result = invoke(["judge", "gpt", preds, "--task", "videorefer-d", "--model", "gpt-3.5-turbo-0125",
                     "--base-url", server.base_url, *FAST])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'gpt-3.5-turbo-0125' is not served by" in errors[0]
    assert "left the API on 2026-10-23" in errors[0] and "does not exist" in errors[0]
    assert "hint: name the judge with --model" in result.stderr
    assert "retired on 2026-10-23" in result.stderr  # said before any call, too


def test_judge_compare_two_cached_judges(server, tmp_path):
    preds = tmp_path / "qa.jsonl"
    preds.write_text("".join(json.dumps({"id": f"q{i}", "question": "q?", "answer": "a", "pred": f"p [[q{i}]]"})
                             + "\n" for i in range(5)))
    a_verdicts = [("yes", 5), ("yes", 4), ("no", 1), ("no", 2), ("yes", 3)]
    b_verdicts = [("yes", 4), ("no", 3), ("no", 0), ("no", 2), ("yes", 4)]
    base = ["judge", "gpt", preds, "--task", "qa", "--base-url", server.base_url, *FAST]
    for model, verdicts, folder in ((MODEL, a_verdicts, "a"), ("judge-b-2025-02-02", b_verdicts, "b")):
        server.answers.update({f"q{i}": json.dumps({"pred": p, "score": s}) for i, (p, s) in enumerate(verdicts)})
        assert invoke([*base, "--model", model, "-o", tmp_path / folder]).exit_code == 0
    requests = server.total_requests
    result = invoke(["judge", "compare", tmp_path / "a", tmp_path / "b", "--json"])
    assert result.exit_code == 0, result.output
    assert server.total_requests == requests  # read from the outputs: no call
    report = json.loads(result.stdout)
    assert report["a"]["model"] == MODEL and report["b"]["model"] == "judge-b-2025-02-02"
    assert report["a"]["base_url"] == server.base_url and report["n_paired"] == 5
    scores = report["scores"]
    a = [s for _, s in a_verdicts]
    b = [s for _, s in b_verdicts]
    assert scores["mean_shift"] == pytest.approx(sum(b) / 5 - sum(a) / 5)
    assert scores["pearson"] == pytest.approx(pearson(a, b)) and 0.7 < scores["pearson"] < 1
    assert scores["exact_agreement"] == pytest.approx(1 / 5)
    yes_no = report["yes_no"]
    assert yes_no["agreement"] == pytest.approx(4 / 5)
    # kappa by hand: p_o = 0.8; A yes 3/5, B yes 2/5 -> p_e = 0.6*0.4 + 0.4*0.6 = 0.48
    assert yes_no["kappa"] == pytest.approx((0.8 - 0.48) / (1 - 0.48))
    table = invoke(["judge", "compare", tmp_path / "a", tmp_path / "b"])
    assert "Cohen's kappa" in table.stdout and "judge-b-2025-02-02" in table.stdout

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "q0", "video": "v", "caption": "c", "pred": "p [[q0]]"}) + "\n")
    server.answers["q0"] = '{"score": 4}'
    assert invoke(["judge", "gpt", other, "--task", "plm-rcap", "--model", MODEL, "--base-url", server.base_url,
                   "-o", tmp_path / "c", *FAST]).exit_code == 0
    mismatch = invoke(["judge", "compare", tmp_path / "a", tmp_path / "c"])
    assert mismatch.exit_code == 2 and mismatch.stderr.count("error:") == 1 and "--task qa" in mismatch.stderr
    nothing = invoke(["judge", "compare", tmp_path / "a", tmp_path])
    assert nothing.exit_code == 1 and "no judgments.jsonl" in nothing.stderr


def test_agreement_statistics():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0) and pearson([1, 1, 1], [1, 2, 3]) is None
    assert cohen_kappa(["yes", "no", "yes"], ["yes", "no", "yes"]) == pytest.approx(1.0)
    assert cohen_kappa(["yes"] * 3, ["yes"] * 3) is None  # chance agreement 1: undefined
    stats = score_agreement([1, 2, 3, 4], [4, 3, 2, 1])
    assert stats["spearman"] == pytest.approx(-1.0) and stats["mean_shift"] == 0 and stats["mean_abs_diff"] == 2
    ties = score_agreement([1, 1, 2], [1, 1, 2])
    assert ties["spearman"] == pytest.approx(1.0) and ties["kappa"] == pytest.approx(1.0)
