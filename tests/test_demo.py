"""`artemis demo`: the whole pipeline end to end (slow), resume, failures, the folder rules, and the
commands written into report.md checked against the real CLI."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.demo import REAL_COMMANDS, STEPS, DemoOptions, Workspace, demo_commands, run_demo
from artemis_cli.demo import runner as demo_runner
from artemis_cli.demo.steps import Step, StepOutput
from artemis_cli.errors import InputError

cli = CliRunner()
ROW = re.compile(r"^\| (\d+) \| ([^|]+) \| (ok|reused|skipped|failed|not run) \|", re.MULTILINE)


def report_rows(folder: Path) -> dict[str, str]:
    """step title -> status, from report.md's step table."""
    return {title.strip(): status for _, title, status in ROW.findall((folder / "report.md").read_text())}


def demo_json(result) -> dict:
    return json.loads(result.stdout)  # nothing else on stdout: library and DeepSpeed logs go to stderr


@pytest.mark.slow
def test_demo_runs_every_step_then_resumes_and_adds_the_judge(tmp_path, monkeypatch):
    from judge_server import FakeJudgeServer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ARTEMIS_JUDGE_MODEL", raising=False)
    out = tmp_path / "demo"
    first = cli.invoke(app, ["demo", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    summary = demo_json(first)
    statuses = {s["key"]: s["status"] for s in summary["steps"]}
    assert list(statuses) == [step.key for step in STEPS]
    assert statuses.pop("judge") == "skipped" and set(statuses.values()) == {"ok"}
    judge = next(s for s in summary["steps"] if s["key"] == "judge")
    assert "no judge model named (--judge-model or ARTEMIS_JUDGE_MODEL" in judge["detail"]  # no retired default

    rows = report_rows(out)
    assert rows == {step.title: ("skipped" if step.key == "judge" else "ok") for step in STEPS}
    report = (out / "report.md").read_text()
    for stage in (1, 2, 3):  # each loss plot embedded, and there
        assert f"![stage{stage} loss](runs/stage{stage}/loss.png)" in report
        assert (out / "runs" / f"stage{stage}" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| B@1 | B@2 | B@3 | B@4 | METEOR | ROUGE_L | CIDEr | SPICE |" in report
    assert "artemis score preds/videorefbench.jsonl" in report and "Skipped: no judge model named" in report

    # Real features replaced the sample's random ones: width 64 from the tiny CLIP, 100 + 256 rows.
    from artemis_cli.data.feature_files import load_feature

    for feature in ("HC-STVG/clip_feature/hcstvg_000.pkl", "GOT-10k/clip_feature/GOT-10k_Train_000001.pkl",
                    "MGIT/clip_feature/MGIT_001.pkl"):
        array = load_feature(out / "sample" / "DATA_ROOT" / "Artemis_data" / feature)
        assert array.shape == (356, 64) and str(array.dtype) == "float16"
    scores = json.loads((out / "scores" / "videorefbench.json").read_text())
    assert scores["n_scored"] == 2 and summary["scores"]["metrics"].keys() == scores["metrics"].keys()
    predictions = [json.loads(line) for line in (out / "preds" / "vcgbench_consistency.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 and all({"pred1", "pred2"} <= set(p) for p in predictions)
    stage3_losses = next(s for s in summary["steps"] if s["key"] == "train-stage3")["detail"]
    first_loss, last_loss = map(float, re.findall(r"loss ([\d.]+) -> ([\d.]+)", stage3_losses)[0])
    assert last_loss < first_loss

    # Rerun into the same folder with a judge server: every finished step is reused, the judge runs.
    monkeypatch.setenv("OPENAI_API_KEY", "demo-key")
    with FakeJudgeServer("demo-key") as server:
        server.answers["?"] = '{"pred": "yes", "score": 4}'  # the demo's predictions carry no item marker
        second = cli.invoke(app, ["demo", "--out", str(out), "--json", "--judge-base-url", server.base_url,
                                    "--judge-model", "gpt-4o-mini-2024-07-18"])
    assert second.exit_code == 0, second.output
    statuses = {s["key"]: s["status"] for s in demo_json(second)["steps"]}
    assert statuses.pop("judge") == "ok" and set(statuses.values()) == {"reused"}
    judged = demo_json(second)["judge"]
    assert set(judged) == {"qa", "correctness", "detail", "context", "temporal", "consistency"}
    assert judged["qa"]["n_items"] == 4 and judged["qa"]["accuracy"] == 1.0 and judged["consistency"]["mean_score"] == 4
    assert all(j["n_judged"] == j["n_items"] and j["served_models"] == ["gpt-4o-mini-2024-07-18"] for j in judged.values())
    assert 0 < server.answered["?"] <= 4 + 2 * 5  # at most one call per item (identical items share one)
    report = (out / "report.md").read_text()
    assert "| qa | 4 | 4 | 100.0% | 4.00 |" in report
    assert report_rows(out)["judge gpt"] == "ok"


def _fake_steps(calls: list[str], fail: str | None = None) -> tuple[Step, ...]:
    def make(key: str):
        def run(ctx):
            calls.append(key)
            if key == fail:
                raise InputError("the sample could not be written", hint="check the disk")
            path = ctx.ws.root / f"{key}.txt"
            path.write_text(key)
            return StepOutput(path, f"{key} done")
        return run

    titles = {"make-sample": "data make-sample", "make-tiny": "model make-tiny", "score": "score"}
    return tuple(Step(key, title, make(key)) for key, title in titles.items())


def test_a_failing_step_stops_the_demo_names_it_and_a_rerun_resumes_there(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(demo_runner, "STEPS", _fake_steps(calls, fail="make-tiny"))
    out = tmp_path / "demo"
    result = cli.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    assert "error: demo step 'model make-tiny' failed: the sample could not be written" in result.stderr
    assert "hint: check the disk" in result.stderr and f"artemis demo -o {out}" in result.stderr
    assert calls == ["make-sample", "make-tiny"]
    assert report_rows(out) == {"data make-sample": "ok", "model make-tiny": "failed", "score": "not run"}
    assert "**Failed at step 'model make-tiny'**" in (out / "report.md").read_text()

    calls.clear()
    monkeypatch.setattr(demo_runner, "STEPS", _fake_steps(calls))
    result = cli.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls == ["make-tiny", "score"]  # make-sample was reused
    assert report_rows(out) == {"data make-sample": "reused", "model make-tiny": "ok", "score": "ok"}

    calls.clear()
    (out / "make-tiny.txt").unlink()  # an output gone: that step and everything after it run again
    assert cli.invoke(app, ["demo", "--out", str(out)]).exit_code == 0
    assert calls == ["make-tiny", "score"]
    calls.clear()
    assert cli.invoke(app, ["demo", "--out", str(out), "--fresh"]).exit_code == 0
    assert calls == ["make-sample", "make-tiny", "score"]


def test_a_temporary_folder_is_removed_unless_kept(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(demo_runner, "STEPS", _fake_steps([]))
    removed = run_demo(DemoOptions(show_progress=False))
    assert removed.ok and removed.removed and not removed.out.exists()
    kept = run_demo(DemoOptions(keep=True, show_progress=False))
    assert kept.out.parent == tmp_path and (kept.out / "report.md").is_file() and not kept.removed
    monkeypatch.setattr(demo_runner, "STEPS", _fake_steps([], fail="score"))
    failed = run_demo(DemoOptions(show_progress=False))
    assert not failed.ok and not failed.removed and (failed.out / "report.md").is_file()  # kept to look into


def test_without_output_the_kept_report_links_nothing_in_the_removed_folder(tmp_path, monkeypatch):
    """The temp folder goes; its report is kept in $ARTEMIS_CACHE/demo/report-<time>/ with its loss plot
    copied beside it, and neither the plot link nor any command points into the removed folder."""
    from rich.console import Console

    from artemis_cli.cli.demo_report import print_summary

    def train(ctx):
        plot = ctx.ws.root / "runs" / "stage1" / "loss.png"
        plot.parent.mkdir(parents=True)
        plot.write_bytes(b"\x89PNG fake plot")
        return StepOutput(plot.parent, "trained", data={"losses": [2.0, 1.5], "loss_plot": str(plot)})

    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("ARTEMIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo_runner, "STEPS", (*_fake_steps([]), Step("train-stage1", "train stage1", train)))
    result = run_demo(DemoOptions(show_progress=False))
    assert result.ok and result.removed and not result.out.exists()
    kept = result.kept_report
    assert kept.name == "report.md" and kept.parent.parent == tmp_path / "cache" / "demo"
    report = kept.read_text()
    assert "![stage1 loss](plots/stage1-loss.png)" in report
    assert (kept.parent / "plots" / "stage1-loss.png").read_bytes() == b"\x89PNG fake plot"
    assert str(result.out) + "/" not in report and "(removed)" in report  # named once, never linked into
    assert "Repeat it on the demo's files" not in report and "On the real data" in report
    console = Console(record=True, width=80)
    print_summary(result, console)
    assert f"report: {kept}" in console.export_text().replace("\n", "")
    assert result.to_json()["report"] == str(kept)


def test_a_folder_that_is_not_a_demo_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    result = cli.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty and holds no earlier demo" in result.stderr
    assert (tmp_path / "thesis.tex").read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    bad = cli.invoke(app, ["demo", "--out", str(tmp_path / "new"), "--device", "tpu"])
    assert bad.exit_code == 2 and "device: expected auto, cpu, cuda or cuda:N" in bad.stderr


def _leaf(args: list[str]):
    command = typer.main.get_command(app)  # typer's own click: groups are told apart by `commands`
    while hasattr(command, "commands"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r}"
        command = command.commands[name]
    return command, args


def check_command(line: str) -> None:
    """`line` names a real command, uses only its options, gives each option a value where it takes
    one, and passes as many arguments as the command has."""
    tokens = shlex.split(line)
    if tokens[0] in ("torchrun", "deepspeed"):  # launchers: `-m artemis_cli` / `--module artemis_cli`
        tokens = tokens[tokens.index("-m" if tokens[0] == "torchrun" else "--module") + 1:]
        assert tokens[0] == "artemis_cli", line
    else:
        assert tokens[0] == "artemis", line
    command, args = _leaf(tokens[1:])
    options = {opt: p for p in command.params if p.param_type_name == "option" for opt in p.opts + p.secondary_opts}
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    positional, i = 0, 0
    while i < len(args):
        if args[i].startswith("-"):
            assert args[i] in options, f"{line}: {command.name} has no option {args[i]}"
            if not options[args[i]].is_flag:
                assert i + 1 < len(args) and not args[i + 1].startswith("--"), f"{line}: {args[i]} needs a value"
                i += 1
        else:
            positional += 1
        i += 1
    required = sum(1 for a in arguments if a.required)
    unlimited = any(a.nargs == -1 for a in arguments)
    assert required <= positional and (unlimited or positional <= len(arguments)), f"{line}: {positional} arguments"


def test_the_judge_step_needs_a_named_model_and_a_key_or_server(monkeypatch):
    from types import SimpleNamespace

    from artemis_cli.demo.steps import judge_skip_reason

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reason = lambda **kw: judge_skip_reason(SimpleNamespace(options=DemoOptions(**kw)))  # noqa: E731
    assert "no judge model named" in reason(judge_base_url="http://127.0.0.1:9/v1")
    assert reason(judge_model="judge-x") == "OPENAI_API_KEY is not set and no --judge-base-url was given"
    assert reason(judge_model="judge-x", judge_base_url="http://127.0.0.1:9/v1") is None
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert reason(judge_model="judge-x") is None
    assert DemoOptions().judge_model is None  # hosted judges retire: no default to go stale


def test_every_reported_command_parses_against_the_cli(tmp_path):
    ws = Workspace(tmp_path / "my demo")  # a space: the commands must quote paths
    for options in (DemoOptions(), DemoOptions(device="cpu", judge_base_url="http://127.0.0.1:8000/v1")):
        mine = demo_commands(ws, options)
        assert set(mine) == set(REAL_COMMANDS) == {step.key for step in STEPS}
        for key in mine:
            for line in mine[key] + [c for c in REAL_COMMANDS[key] if not c.startswith("#")]:
                check_command(line)
    with pytest.raises(AssertionError, match="has no option --frame"):
        check_command("artemis features extract IN OUT --frame")


def readme_commands() -> list[str]:
    """Every artemis command line in the README's bash blocks (continuations joined, comments cut)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = part.split()
                if words and (words[0] == "artemis" or "artemis_cli" in words):
                    lines.append(part.strip())
    return lines


def test_every_readme_command_parses_against_the_cli():
    lines = readme_commands()
    assert lines[0] == "artemis demo" and len(lines) >= 20
    for line in lines:
        check_command(line.replace("preds/videorefbench.shard-*-of-8.jsonl", "a.jsonl b.jsonl"))


def test_json_keeps_stdout_for_the_document_and_shows_progress_on_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_runner, "STEPS", _fake_steps([]))
    result = cli.invoke(app, ["demo", "-o", str(tmp_path / "d"), "--json"])
    assert result.exit_code == 0, result.output
    assert [s["status"] for s in demo_json(result)["steps"]] == ["ok", "ok", "ok"]
    shown = [line.split() for line in result.stderr.splitlines() if line.strip().startswith("ok ")]
    assert [words[1:3] for words in shown] == [["[1/3]", "data"], ["[2/3]", "model"], ["[3/3]", "score"]]


def test_the_readme_names_the_summary_tables_columns():
    """README: "It ends with a table (...)" lists the columns `print_summary` draws."""
    from rich.console import Console

    from artemis_cli.cli.demo_report import print_summary
    from artemis_cli.demo.results import DemoResult, StepRecord

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    named = re.search(r"It ends with a table \(([^)]*)\)", readme.replace("\n", " "))
    assert named, "README's demo section no longer says which columns the summary has"
    console = Console(record=True, width=200)
    print_summary(DemoResult(out=Path("/x"), steps=[StepRecord("a", "a")], seconds=1.0, temporary=False), console)
    header = next(line for line in console.export_text().splitlines() if "step" in line and "status" in line)
    columns = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert named.group(1).split(";")[0].split(", ") == columns
