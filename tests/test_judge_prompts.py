"""Judge prompts (placeholders, --prompt-file checks, hashes) and prediction records -> items."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import InputError, UsageError
from artemis_cli.judge.items import load_items
from artemis_cli.judge.prompts import PromptTemplate
from artemis_cli.judge.tasks import DEFAULT_TEMPLATES, JUDGE_TASKS, PLACEHOLDERS, TASKS, load_template


@pytest.mark.parametrize("task", [name for name in TASKS if JUDGE_TASKS[name].protocol == ""])
def test_default_templates_use_every_placeholder_and_ask_for_json(task):
    template = DEFAULT_TEMPLATES[task]
    fields = {name: f"<{name}-text>" for name in PLACEHOLDERS[task]}
    messages = template.render(fields)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    for name in PLACEHOLDERS[task]:
        assert f"<{name}-text>" in user
    assert "JSON" in user and '"score"' in user
    assert ('"pred"' in user) == (task == "qa")
    assert "{" + PLACEHOLDERS[task][0] + "}" not in user  # all filled


def test_render_is_single_pass_and_keeps_other_braces():
    template = PromptTemplate(system="", user="Q: {question} A: {answer} P: {pred} e.g. {'score': 4.8} {\"pred\": 1}")
    text = template.render({"question": "{answer}", "answer": "dog", "pred": "{pred}"})[0]["content"]
    assert text == "Q: {answer} A: dog P: {pred} e.g. {'score': 4.8} {\"pred\": 1}"


def test_prompt_file_yaml_text_and_checks(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("system: be strict\nuser: |\n  {question} / {answer} / {pred}\n  reply {'score': 4}\n")
    template = load_template("detail", yaml_file)
    assert template.system == "be strict"
    assert template.hash() != DEFAULT_TEMPLATES["detail"].hash()
    text_file = tmp_path / "p.txt"
    text_file.write_text("Question 1: {question1}\nQuestion 2: {question2}\n{answer}\n{pred1}\n{pred2}\n")
    assert load_template("consistency", text_file).system == ""
    with pytest.raises(UsageError, match=r"missing placeholder \{pred2\}.*unknown placeholder \{prediction\}"):
        text_file.write_text("{question1} {question2} {answer} {pred1} {prediction}")
        load_template("consistency", text_file)
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("sytem: x\nuser: '{question} {answer} {pred}'\n")
    with pytest.raises(UsageError, match="sytem"):
        load_template("qa", bad_key)
    with pytest.raises(UsageError, match="not found"):
        load_template("qa", tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="--task 'caption'"):
        load_template("caption")


def test_show_prompt_round_trips_as_prompt_file(tmp_path):
    result = CliRunner().invoke(app, ["judge", "show-prompt", "--task", "consistency"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "consistency.yaml"
    path.write_text(result.stdout)
    assert load_template("consistency", path) == DEFAULT_TEMPLATES["consistency"]


def test_qa_items(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "v1_0", "question": "what?", "answer": 3, "pred": "three", "extra": 1},
        {"id": 7, "question": "who?", "answer": "a man", "pred": "a woman"},
    ]) + "\n")
    items = load_items("qa", path)
    assert [i.id for i in items] == ["v1_0", "7"]
    assert items[0].fields == {"question": "what?", "answer": "3", "pred": "three"}
    assert items[0].content_hash != items[1].content_hash
    path.write_text(path.read_text() + json.dumps({"id": "7", "question": "q", "answer": "a", "pred": "p"}) + "\n")
    with pytest.raises(InputError, match=r"qa.jsonl:3: duplicate id '7' \(first at 2\)"):
        load_items("qa", path)


def test_benchmark_items_use_published_ids():
    records = [
        {"video_name": "v_a", "Q": "q1", "A": "a", "pred": "p1"},
        {"video_name": "v_b", "Q": "q2", "A": "a", "pred": "p2"},
        {"video_name": "v_a", "Q": "q3", "A": "a", "pred": "p3"},
        {"id": "x", "question": "q4", "answer": "a", "pred": "p4"},
    ]
    items = load_items("temporal", records)
    assert [i.id for i in items] == ["v_a_0", "v_b_0", "v_a_1", "x_0"]
    assert items[3].fields == {"question": "q4", "answer": "a", "pred": "p4"}
    consistency = load_items("consistency", [{"video_name": "v", "Q1": "a?", "Q2": "b?", "A": "c",
                                              "pred1": "d", "pred2": "e"}])
    assert consistency[0].fields == {"question1": "a?", "question2": "b?", "answer": "c", "pred1": "d", "pred2": "e"}


def test_malformed_records_are_all_reported(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps([
        {"video_name": "v", "Q": "q", "A": "a"},
        ["not", "an", "object"],
        {"Q": "q", "A": "a", "pred": "p"},
        {"video_name": "v", "Q": "q", "A": "a", "pred": "p"},
    ]))
    with pytest.raises(InputError) as info:
        load_items("detail", path)
    message = info.value.message
    assert "3 malformed prediction record(s)" in message
    assert "bench.json:0: pred: Field required" in message
    assert "bench.json:1: expected a JSON object" in message
    assert "bench.json:2: needs 'video_name' or 'id'" in message
    with pytest.raises(InputError, match="no prediction records"):
        load_items("qa", [])


def test_a_new_judge_task_is_one_entry(tmp_path, monkeypatch):
    """A task defined here, added to `JUDGE_TASKS` only: the CLI, the prompt checks, the item reader, the
    reply parser and the summary all take it."""
    from types import SimpleNamespace

    from artemis_cli.data.benchmarks import PREDICTIONS
    from artemis_cli.judge import JudgeOptions, judge
    from artemis_cli.judge.tasks import JUDGE_TASKS, JudgeTask

    fluency = JudgeTask("fluency", PREDICTIONS["vcg"], PromptTemplate(
        system="Rate the fluency of the predicted answer.",
        user='Question: {question}\nCorrect answer: {answer}\nPredicted answer: {pred}\nReply {"score": N}.'),
        about="fluency, 0-5")
    monkeypatch.setitem(JUDGE_TASKS, "fluency", fluency)
    preds = tmp_path / "generic.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in [
        {"video_name": "v", "Q": "what?", "A": "a cat", "pred": "a cat", "id": "v_0"},
        {"video_name": "v", "Q": "who?", "A": "a dog", "pred": "a dog", "id": "v_1"}]))
    shown = CliRunner().invoke(app, ["judge", "show-prompt", "--task", "fluency"])
    assert shown.exit_code == 0 and "Rate the fluency" in shown.stdout
    dry = CliRunner().invoke(app, ["judge", "gpt", str(preds), "--task", "fluency", "--dry-run", "--json",
                                   "--cache", str(tmp_path / "cache"), "--model", "m"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["calls_needed"] == 2
    unknown = CliRunner().invoke(app, ["judge", "show-prompt", "--task", "fluent"])
    assert unknown.exit_code == 2 and "fluency" in unknown.output

    replies = iter(['{"score": 4}', '{"score": 2}'])
    create = lambda model, messages, **kw: SimpleNamespace(  # noqa: E731
        model=model, usage=None, choices=[SimpleNamespace(message=SimpleNamespace(content=next(replies)))])
    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    summary = judge(preds, JudgeOptions(task="fluency", model="m", cache_dir=tmp_path / "cache", output_dir=tmp_path / "out",
                                        show_progress=False, concurrency=1), client=client)
    assert (summary.n_judged, summary.mean_score, summary.accuracy) == (2, 3.0, None)
    lines = [json.loads(line) for line in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ["v_0", "v_1"]  # the ids infer wrote
    assert lines[0]["item"] == {"question": "what?", "answer": "a cat", "pred": "a cat"}
