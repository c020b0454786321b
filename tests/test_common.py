import json
import os

import pytest
from pydantic import BaseModel, ConfigDict

from artemis_cli.common.atomic import atomic_folder, atomic_open, atomic_write_json
from artemis_cli.common.config import load_config, parse_override
from artemis_cli.common.jsonio import load_json, load_records
from artemis_cli.common.jsonl_writer import ResumableJsonl
from artemis_cli.errors import ConfigError, InputError, UsageError


def test_atomic_open_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("{partial")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_folder_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (target / "old.txt").read_text() == "old"
    with atomic_folder(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_files_get_the_umask_mode_not_0600(tmp_path):
    from artemis_cli.common import atomic

    atomic_write_json(tmp_path / "f.json", {})
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
    assert atomic._UMASK != 0o177  # i.e. not what mkstemp's 0600 would give


def test_resumable_jsonl_repairs_a_torn_last_line_and_skips_done_ids(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text('{"id": "a", "pred": "x"}\n{"id": "b", "pred": "y"}\n{"id": "c", "pr')
    with ResumableJsonl(path) as out:
        assert out.done == {"a", "b"} and out.repaired
        assert out.pending(["a", "b", "c", "d"], key=lambda i: i) == ["c", "d"]
        out.write({"id": "c", "pred": "z"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c"]


def test_resumable_jsonl_refuses_a_corrupt_complete_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InputError, match="not valid JSON; refusing to append"):
        ResumableJsonl(path).__enter__()


def test_load_json_errors_name_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"a": 1},\n  {"b": }\n]')
    with pytest.raises(InputError, match=r"bad.json:3:9: invalid JSON"):
        load_json(bad)
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="file is empty"):
        load_json(empty)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'[{"a": "caf\xe9"}]')
    with pytest.raises(InputError, match=r"latin.json:1: not valid UTF-8 \(byte 0xe9"):
        load_json(latin)


def test_load_records_reads_jsonl_and_json_lists(tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"id": 1}\n\n{"id": 2}\n')
    assert load_records(jl) == [(1, {"id": 1}), (3, {"id": 2})]
    js = tmp_path / "p.json"
    js.write_text('[{"id": 1}, {"id": 2}]')
    assert load_records(js) == [(0, {"id": 1}), (1, {"id": 2})]
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"id": 1}\n{"id": \n{"id": 3}\n')
    with pytest.raises(InputError, match="b.jsonl:2:"):
        load_records(broken)
    bad: list = []
    assert [r for _, r in load_records(broken, skip_bad=True, bad=bad)] == [{"id": 1}, {"id": 3}]
    assert bad[0][0] == 2


class _Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-3
    epochs: int = 1


class _Run(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    train: _Train = _Train()


def test_config_overrides_apply_before_validation(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: demo\ntrain:\n  epochs: 3\n")
    config = load_config(_Run, path, ["train.lr=1e-4", "name=other"])
    assert config == _Run(name="other", train=_Train(lr=1e-4, epochs=3))
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_config_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: fast\n  epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(_Run, path)
    problems = info.value.problems
    assert "name: Field required" in problems
    assert any(p.startswith("train.lr: ") for p in problems)
    assert "train.epoch: unknown key (typo?)" in problems
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        load_config(_Run, None, ["name"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(UsageError, match=r"broken.yaml:\d+:\d+: invalid YAML"):
        load_config(_Run, broken)


# ---- one mechanism each: sharding, run-folder settings, dtypes, validation messages, media --------------
def test_sharding_covers_each_item_once_in_contiguous_chunks():
    from artemis_cli.common.sharding import Shard, resolve_shard

    sources = [f"v{i:02d}" for i in range(11)]
    shards = [Shard(3, k).slice(sources) for k in range(3)]
    names = [name for shard in shards for name in shard]
    assert names == sources  # contiguous: shard k holds the k-th chunk, in order
    assert [len(s) for s in shards] == [4, 4, 3]
    assert resolve_shard(None, None, {"RANK": "2", "WORLD_SIZE": "4"}) == Shard(4, 2)
    assert resolve_shard(None, None, {}) == Shard(1, 0)
    assert resolve_shard(2, 1, {"RANK": "3", "WORLD_SIZE": "4"}) == Shard(2, 1)  # flags win
    with pytest.raises(UsageError, match="index must be in 0..1"):
        resolve_shard(2, 2, {})
    with pytest.raises(UsageError, match="are not integers"):
        resolve_shard(env={"WORLD_SIZE": "two"})
    assert Shard(8, 3).file_name("manifest", ".json") == "manifest.shard-3-of-8.json"
    assert Shard(8, 3).legacy_file_name("manifest", ".json") == "manifest.shard-003-of-008.json"
    assert Shard().file_name("manifest", ".json") == "manifest.json"


def test_settings_check_names_every_difference():
    from artemis_cli.common.manifest import changed_settings, refuse_other_settings

    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == ["b", "c"]
    refuse_other_settings("out", {"a": 1}, {"a": 1})  # same settings: no error
    with pytest.raises(UsageError, match=r"out: was written with other settings \(b, input ids\)") as info:
        refuse_other_settings("out", {"b": 1}, {"b": 2}, also=["input ids"], hint="h")
    assert info.value.hint == "h"


def test_one_dtype_resolver():
    import torch

    from artemis_cli.common.dtypes import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", torch.device("cuda", 1)) == torch.float16
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16 and resolve_dtype(torch.float16, "cpu") == torch.float16
    with pytest.raises(UsageError, match="--dtype int8: expected auto"):
        resolve_dtype("int8", "cpu")


def test_validation_problems_are_location_message_lines():
    from pydantic import Field, ValidationError

    from artemis_cli.common.validation import validation_problems

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        lr: float = Field(gt=0)

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        train: list[Inner]
        name: str

    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"train": [{"lr": -1, "epoch": 2}]})
    problems = validation_problems(info.value)
    assert "train.0.lr: Input should be greater than 0" in problems
    assert "train.0.epoch: unknown key (typo?)" in problems and "name: Field required" in problems
    assert "train[0].lr: Input should be greater than 0" in validation_problems(info.value, brackets=True)
    assert "name: missing required field" in validation_problems(info.value, missing="missing required field")


def test_one_list_of_media_tokens_and_feature_suffixes():
    from artemis_cli.common import media
    from artemis_cli.data import feature_files, records
    from artemis_cli.model import conversation

    assert media.MEDIA_TOKEN.findall("<video> a <image> b <bbox>") == ["<video>", "<image>"]
    assert records.IMAGE_TOKEN is media.IMAGE_TOKEN and conversation.VIDEO_TOKEN is media.VIDEO_TOKEN
    assert feature_files.FEATURE_SUFFIXES is media.FEATURE_SUFFIXES


def test_stop_signals_make_a_process_that_inherited_ignored_sigint_stoppable():
    """`nohup cmd &` passes SIG_IGN for SIGINT to the child: inside `stop_signals` Ctrl-C still raises
    KeyboardInterrupt (and SIGTERM SystemExit(143)); outside it the inherited setting is back."""
    import signal
    import subprocess
    import sys

    script = """
import os, signal, sys, time
from artemis_cli.common.signals import stop_signals
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
sig = getattr(signal, sys.argv[1])
try:
    with stop_signals():
        os.kill(os.getpid(), sig)
        time.sleep(30)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except SystemExit as exc:
    print("SystemExit", exc.code)
print("restored", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""
    for name, expected in (("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "SystemExit 143")):
        done = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:2] == [expected, "restored True"], done.stdout


def test_a_model_folder_or_hub_id_resolves_or_fails_fast_naming_its_option(tmp_path, monkeypatch):
    """A missing folder is bad usage naming the option; a hub id that is not cached fails within the
    connection probe (here: a closed local port as the endpoint, and HF_HUB_OFFLINE), not after a minute
    of retries; a cached snapshot resolves offline."""
    import time

    from huggingface_hub import constants

    from artemis_cli.common import hub

    (tmp_path / "model").mkdir()
    assert hub.resolve_model_folder(tmp_path / "model", option="--model") == tmp_path / "model"
    with pytest.raises(UsageError, match=r"^--model-base .*/gone: no such folder$"):
        hub.resolve_model_folder(tmp_path / "gone", option="--model-base")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(UsageError, match="expected a folder, got a file"):
        hub.resolve_model_folder(tmp_path / "file.json", option="--model")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    for offline in (False, True):
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        began = time.monotonic()
        with pytest.raises(UsageError) as caught:
            hub.resolve_model_folder("openai/clip-vit-large-patch14", option="--clip-model")
        assert time.monotonic() - began < hub.PROBE_SECONDS + 2
        assert caught.value.message.startswith("--clip-model openai/clip-vit-large-patch14: no such folder, "
                                               "not in the Hugging Face cache, and the hub cannot be reached")
        assert "hf download openai/clip-vit-large-patch14" in caught.value.hint
    # a snapshot in the cache is found without the network
    snapshot = tmp_path / "hf-cache" / "models--org--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hf-cache" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hf-cache" / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    assert hub.resolve_model_folder("org/tiny", option="--model") == snapshot


def test_progress_off_a_terminal_prints_plain_lines_every_few_seconds(monkeypatch):
    """Output to a file or pipe: no live bar (rich would show nothing until the end) but a plain line per
    task every ARTEMIS_PROGRESS_SECONDS while it moves, and the final count."""
    import io
    import time

    from rich.console import Console
    from rich.progress import TextColumn

    from artemis_cli.common.console import PlainLinesProgress, make_progress

    monkeypatch.setenv("ARTEMIS_PROGRESS_SECONDS", "0.2")
    out = io.StringIO()
    with make_progress(TextColumn("{task.fields[rate]}"), console=Console(file=out, force_terminal=False)) as bar:
        assert isinstance(bar, PlainLinesProgress)
        task = bar.add_task("[bold]features", total=12, rate="")
        for done in range(1, 13):
            time.sleep(0.06)
            bar.update(task, completed=done, rate=f"{done} videos/s")
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 8, lines
    assert all(line.startswith("features: ") and "elapsed" in line for line in lines)
    assert lines[-1].startswith("features: 12/12 (100%)") and lines[-1].endswith("12 videos/s")
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and counts[0] < 12
    terminal = make_progress(console=Console(file=io.StringIO(), force_terminal=True))
    assert not isinstance(terminal, PlainLinesProgress)


def test_the_suite_writes_its_temp_files_under_pytests_base_temp(tmp_path_factory):
    """Each run's temp files (the code's own, servers', torch.compile's, gradio's, the artemis cache) live
    under pytest's base temp, removed when every test passed (pyproject: retention policy "failed")."""
    import tempfile
    import tomllib
    from pathlib import Path

    base = tmp_path_factory.getbasetemp()
    for name in ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR", "GRADIO_TEMP_DIR", "ARTEMIS_CACHE"):
        assert base in Path(os.environ[name]).parents, name
    assert base in Path(tempfile.mkdtemp()).parents
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["tool"]["pytest"]["ini_options"]["tmp_path_retention_policy"] == "failed"
    assert isinstance(pyproject["project"]["license"], str)  # SPDX form: no setuptools deprecation warning
