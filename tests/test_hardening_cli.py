"""Issue 14: one CLI contract for every command, including the ones added after this test was written.

The commands are discovered from the Typer app: every command that has ``--json`` must print exactly
one JSON document on stdout and nothing else, whether it succeeds (a cheap real run where one is
listed in `SUCCESS`) or fails (then stdout stays empty); every usage line shows ``OUT``-style names
and no ``<bool>``; an escaping exception is one ``error: internal error`` line; Ctrl-C exits 130 with
a line saying how to resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import typer.main
from typer.testing import CliRunner

from artemis_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def leaf_commands() -> dict[str, object]:
    """'data make-sample' -> its click command, for every command of the app."""
    found = {}

    def walk(command, path):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


def has_json(command) -> bool:
    return any("--json" in getattr(p, "opts", []) for p in command.params)


def assert_one_json_document(result, name: str) -> dict:
    text = result.stdout
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"`artemis {name} --json` stdout is not one JSON document ({exc}):\n{text[:2000]}")
    assert text.strip().startswith(("{", "[")), text[:200]
    return document


# Cheap real runs, by command; they get the session's fixtures as `f`. Commands not listed are run with
# inputs that do not exist: then stdout must stay empty (the error goes to stderr).
def _score(f, tmp):
    preds = tmp / "preds.jsonl"
    preds.write_text("".join(json.dumps({"video_name": f"v{i}", "groundtruth": "a red box moves to the left side",
                                         "pred": "the red box slides to the left side"}) + "\n" for i in range(3)))
    return ["score", preds, "--metrics", "bleu,rouge"]


def _judge(f, tmp):
    preds = tmp / "preds.jsonl"
    preds.write_text(json.dumps({"id": "q1", "question": "q?", "answer": "a", "pred": "a"}) + "\n")
    return ["judge", "gpt", preds, "--task", "qa", "--cache", tmp / "cache", "--dry-run", "--model", "judge-2025-01-01"]


SUCCESS: dict[str, Callable] = {
    "doctor": lambda f, tmp: ["doctor", "--path", tmp],
    "data make-sample": lambda f, tmp: ["data", "make-sample", tmp / "s", "--feature-dim", "8"],
    "data verify-layout": lambda f, tmp: ["data", "verify-layout", f["sample"].data_root, "--annotations",
                                          f["sample"].annotations],
    "features inspect": lambda f, tmp: ["features", "inspect", f["sample"].data_root / "valley"],
    "model inspect": lambda f, tmp: ["model", "inspect", f["tiny_artemis_dir"]],
    "model make-tiny": lambda f, tmp: ["model", "make-tiny", tmp / "tiny"],
    "model eval-toy": lambda f, tmp: ["model", "eval-toy", tmp / "eval", "--videos", "2"],
    "score": _score,
    "judge gpt": _judge,
}


@pytest.mark.slow
def test_every_json_command_prints_one_json_document(sample, tiny_artemis_dir, tmp_path):
    fixtures = {"sample": sample, "tiny_artemis_dir": tiny_artemis_dir}
    commands = {name: c for name, c in leaf_commands().items() if has_json(c)}
    assert set(SUCCESS) <= set(commands), f"renamed? {sorted(set(SUCCESS) - set(commands))}"
    assert len(commands) >= 15  # the discovery works (about 20 commands had --json when written)
    for index, (name, command) in enumerate(sorted(commands.items())):
        work = tmp_path / f"c{index}"
        work.mkdir()
        if name in SUCCESS:
            args = [str(a) for a in SUCCESS[name](fixtures, work)]
            result = runner.invoke(app, [*args, "--json"])
            assert result.exit_code in (0, 1), f"{name}: {result.output}"
            assert_one_json_document(result, name)
        else:
            required = [p for p in command.params if getattr(p, "required", False)]
            args = name.split()
            blocker = work / "a-file"
            blocker.write_text("x")
            if not required:  # nothing required (demo, train): an output below a regular file stops it early
                output = next((p for p in command.params if "--output" in getattr(p, "opts", [])), None)
                args += [output.opts[0], str(blocker / "out")] if output is not None else []
            for param in required:  # every required input names a path that does not exist, every output a
                # folder below a regular file (a command with only an output, train-toy, would run for minutes)
                output = param.name in ("out", "output")
                missing = str(blocker / "out") if output else str(work / f"missing-{param.name}")
                if param.param_type_name == "argument":
                    args.append(missing)
                else:
                    args += [param.opts[0], missing]
            result = runner.invoke(app, [*args, "--json"])
            assert result.exit_code != 0, f"{name} accepted missing inputs: {result.output}"
            assert result.stdout.strip() == "", f"`artemis {name} --json` wrote to stdout on an error:\n{result.stdout}"
            assert "Traceback" not in result.output and "error:" in result.stderr, f"{name}: {result.output}"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["doctor", "--json"]])
def test_json_stdout_survives_deepspeed_and_library_noise_in_a_real_process(tmp_path, args):
    """DeepSpeed logs "Setting accelerator to CPU" to stdout when it is imported: in a fresh process it
    must land on stderr (doctor imports DeepSpeed; make-tiny's --json is covered in-process by the test
    above, through the same mechanism). Library progress bars stay off without --verbose."""
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    out = subprocess.run([sys.executable, "-m", "artemis_cli", *[a.format(tmp=tmp_path) for a in args]],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    json.loads(out.stdout)
    assert "Writing model shards" not in out.stderr and "Loading weights" not in out.stderr


def test_usage_lines_show_argument_names_and_flags_without_bool():
    for name in leaf_commands():
        result = runner.invoke(app, [*name.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0, f"{name}: {result.output}"
        usage = next(line for line in result.output.splitlines() if "Usage:" in line)
        assert "{" not in usage, f"{name}: {usage}"
        assert "<bool>" not in result.output, f"{name} help shows <bool>"


@pytest.mark.parametrize("command, option, choices", [
    ("features extract", "--backend", "hf|open_clip"),
    ("features extract", "--resize", "nearest|center-crop"),
    ("features extract", "--format", "pkl|npy|safetensors"),
    ("data verify-layout", "--stage", "1|2|3"),
    ("infer qa", "--dataset", "msvd"),
    ("judge gpt", "--task", "qa"),
])
def test_choices_are_listed_in_help(command, option, choices):
    result = runner.invoke(app, [*command.split(), "--help"], terminal_width=200)
    line = next(line for line in result.output.splitlines() if option in line)
    help_block = result.output[result.output.index(line):][:600]
    assert choices in help_block, help_block


def test_bad_choice_names_the_users_option(tmp_path):
    result = runner.invoke(app, ["features", "extract", str(tmp_path), str(tmp_path / "o"), "--format", "tiff"])
    assert result.exit_code == 2 and "--format" in result.output and "config:" not in result.output
    assert result.output.count("error:") == 1


def test_internal_errors_are_one_line_with_a_hint(monkeypatch):
    import artemis_cli.data.sample as sample

    def boom(*args, **kwargs):
        raise KeyError("video_name")

    monkeypatch.setattr(sample, "make_sample", boom)
    result = runner.invoke(app, ["data", "make-sample", "/tmp/never-written"])
    assert result.exit_code == 1
    assert "error: internal error (KeyError: 'video_name')" in result.stderr
    assert "ARTEMIS_DEBUG=1" in result.stderr and "Traceback" not in result.output
    monkeypatch.setenv("ARTEMIS_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["data", "make-sample", "/tmp/never-written"]).exception, KeyError)


def test_internal_error_never_prints_the_api_key(monkeypatch):
    import artemis_cli.data.sample as sample

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-0123456789")
    monkeypatch.setattr(sample, "make_sample", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("key sk-secret-0123456789")))
    result = runner.invoke(app, ["data", "make-sample", "/tmp/never-written"])
    assert "sk-secret-0123456789" not in result.output and "***" in result.output


@pytest.mark.parametrize("args, resume", [
    (["data", "make-sample", "/tmp/never-written"], "rerun the same command"),
    (["train", "stage3", "-c", str(REPO / "examples" / "configs" / "sample_stage3.yaml")], "--resume"),
])
def test_ctrl_c_exits_130_with_a_resume_line(monkeypatch, args, resume):
    import artemis_cli.data.sample as sample
    import artemis_cli.train.config as train_config

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample, "make_sample", interrupted)
    monkeypatch.setattr(train_config, "load_train_config", interrupted)
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "interrupted:" in result.stderr and resume in result.stderr


@pytest.mark.parametrize("args", [
    ["score", "{missing}"],
    ["train", "stage3", "-c", "{missing}"],
    ["judge", "gpt", "{missing}", "--task", "qa"],
    ["judge", "show-prompt", "--task", "qa", "--prompt-file", "{missing}"],
    ["features", "inspect", "{missing}"],
    ["features", "extract", "{missing}", "{tmp}/out"],
    ["infer", "qa", "--model", "m", "--dataset", "msvd", "--questions", "{missing}", "--answers", "{missing}",
     "--features", "{tmp}", "-o", "{tmp}/p.jsonl"],
    ["model", "merge-lora", "{missing}", "{tmp}/out", "--base", "{tmp}"],
    ["data", "verify-layout", "{missing}"],
])
def test_a_missing_input_path_is_bad_usage(tmp_path, args):
    missing = tmp_path / "missing.json"
    result = runner.invoke(app, [a.format(missing=missing, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_a_missing_model_folder_is_bad_usage(sample, tmp_path):
    """`--model` names an input path too: missing, it is exit 2 with one line naming the option."""
    missing = tmp_path / "no-such-model"
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    result = runner.invoke(app, ["infer", "qa", "--model", str(missing), "--dataset", "msvd",
                                 "--questions", str(sample.annotations / "msvd_qa" / "test_q.json"),
                                 "--answers", str(sample.annotations / "msvd_qa" / "test_a.json"),
                                 "--features", str(features), "-o", str(tmp_path / "p.jsonl"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[0] == f"error: --model {missing}: no such folder"


def test_one_spelling_for_the_output_option():
    for name in ("demo", "judge gpt", "train stage1", "infer qa", "infer vcgbench"):
        text = runner.invoke(app, [*name.split(), "--help"], terminal_width=200).output
        assert "--output" in text and "-o " in text, f"{name} has no --output/-o"
    demo = runner.invoke(app, ["demo", "--help"], terminal_width=200).output
    train = runner.invoke(app, ["train", "stage1", "--help"], terminal_width=200).output
    assert "--out " not in demo and "--output-dir" not in train  # the old spellings are hidden aliases
    vcg = runner.invoke(app, ["infer", "vcgbench", "--help"], terminal_width=200).output
    assert "--subset" in vcg and "--set " not in vcg


def test_train_old_output_dir_spelling_still_works(monkeypatch, tmp_path):
    import artemis_cli.cli.train as cli_train

    seen = {}
    monkeypatch.setattr(cli_train, "run_stage", lambda stage, config, sets, ds, out, *rest: seen.update(out=out))
    assert runner.invoke(app, ["train", "stage1", "--output-dir", str(tmp_path)]).exit_code == 0
    assert seen["out"] == tmp_path


def test_only_rank_zero_prints_the_training_summary(monkeypatch, train_workspace):
    import artemis_cli.train.run as run
    from artemis_cli.train.run import TrainResult

    result = TrainResult(stage=1, output_dir=Path("run"), global_step=4, train_loss=1.0, last_loss=1.0,
                         runtime_s=1.0, tokens_per_s=None, samples=3, skipped=0, trainable_parameters=1,
                         total_parameters=2)
    monkeypatch.setattr(run, "train", lambda *a, **k: result)
    config = str(REPO / "examples" / "configs" / "sample_stage1.yaml")
    monkeypatch.setenv("RANK", "1")
    other = runner.invoke(app, ["train", "stage1", "-c", config])
    assert other.exit_code == 0 and "optimizer steps" not in other.output
    other_json = runner.invoke(app, ["train", "stage1", "-c", config, "--json"])
    assert other_json.stdout == ""
    monkeypatch.setenv("RANK", "0")
    main = runner.invoke(app, ["train", "stage1", "-c", config])
    assert main.exit_code == 0 and "optimizer steps" in main.stderr


def test_broken_pipe_is_not_an_internal_error(monkeypatch):
    import artemis_cli.data.sample as sample

    monkeypatch.setattr(sample, "make_sample", lambda *a, **k: (_ for _ in ()).throw(BrokenPipeError(32, "Broken pipe")))
    result = runner.invoke(app, ["data", "make-sample", "/tmp/never-written"])
    assert "internal error" not in result.output


def test_config_errors_name_the_users_options(tmp_path, sample):
    (tmp_path / "videos").mkdir()
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "videos"), str(tmp_path / "o"), "--dtype", "fp8"])
    assert result.exit_code == 2 and "--dtype: Input should be" in result.stderr and "(dtype)" in result.stderr
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    (tmp_path / "model").mkdir()
    result = runner.invoke(app, ["infer", "qa", "--model", str(tmp_path / "model"), "--dataset", "bogus",
                                 "--questions", str(sample.annotations / "msvd_qa" / "test_q.json"),
                                 "--answers", str(sample.annotations / "msvd_qa" / "test_a.json"),
                                 "--features", str(features), "-o", str(tmp_path / "p.jsonl"), "--temperature", "-1"])
    assert result.exit_code == 2
    assert "--dataset: 'bogus': expected one of" in result.stderr and "(task.qa.dataset)" in result.stderr
    assert "--temperature: Input should be greater than 0 (decoding.temperature)" in result.stderr


def test_demo_summary_is_readable_at_80_columns(tmp_path):
    from rich.console import Console

    from artemis_cli.cli.demo_report import print_summary
    from artemis_cli.demo.results import DemoResult, StepRecord

    long_path = "DATA_ROOT/Artemis_data/GOT-10k/clip_feature_from_the_frame_folders"
    steps = [StepRecord(key="features", title="features extract (frames)", status="ok", seconds=3.2, output=long_path),
             StepRecord(key="judge", title="judge gpt", status="skipped", seconds=0.0,
                        detail="OPENAI_API_KEY is not set and no --judge-base-url")]
    result = DemoResult(out=tmp_path / "demo-folder", steps=steps, seconds=4.0, temporary=False)
    console = Console(record=True, width=80)
    print_summary(result, console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80  # the table fits
    assert any(long_path in line for line in lines), lines  # whole, on one line, not broken mid-word
