"""Issue 14: an output never destroys an input, and output paths are checked before any work.

Every case the issue found is here: the command is refused with exit 2 and one `error:` line, and the
input is still there, byte for byte. The guards run before any model is loaded, so `load_model` is
replaced by a function that fails the test if it is reached."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.common.paths import check_output, check_owned
from artemis_cli.errors import UsageError

runner = CliRunner()


def invoke(args: list[str]):
    return runner.invoke(app, [str(a) for a in args])


def digest(path: Path) -> str:
    """A folder's or file's content, so a test can tell that nothing in it changed."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails the test if a command gets as far as loading a model."""
    import artemis_cli.model.loading as loading

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(loading, "load_model", forbidden)
    monkeypatch.setattr(loading, "merge_lora", forbidden)


@pytest.fixture
def lora_run(tmp_path) -> Path:
    """Looks like a stage-3 run folder (what the guard sees; nothing is loaded)."""
    run = tmp_path / "runs" / "stage3"
    (run / "checkpoint-2").mkdir(parents=True)
    for name in ("adapter_config.json", "config.json"):
        (run / name).write_text("{}")
    (run / "non_lora_trainables.bin").write_bytes(b"weights")
    (run / "adapter_model.safetensors").write_bytes(b"adapter")
    return run


def test_merge_lora_out_equal_to_the_run_folder_is_refused_with_overwrite(lora_run, tmp_path, no_model_loading):
    base = tmp_path / "stage2"
    base.mkdir()
    before = digest(lora_run)
    result = invoke(["model", "merge-lora", lora_run, lora_run, "--base", base, "--overwrite"])
    refused(result, "OUT", "RUN_DIR", "same path")
    assert digest(lora_run) == before


def test_merge_lora_out_equal_to_base_or_inside_the_run_is_refused(lora_run, tmp_path, no_model_loading):
    base = tmp_path / "stage2"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"base weights")
    before = digest(base)
    refused(invoke(["model", "merge-lora", lora_run, base, "--base", base, "--overwrite"]), "--base")
    assert digest(base) == before
    refused(invoke(["model", "merge-lora", lora_run, lora_run / "merged", "--base", base]), "inside RUN_DIR")
    refused(invoke(["model", "merge-lora", lora_run / "checkpoint-2", lora_run.parent, "--base", base, "--overwrite"]),
            "contains RUN_DIR")


def test_merge_lora_overwrite_only_replaces_a_merged_model(lora_run, tmp_path, no_model_loading):
    base = tmp_path / "stage2"
    base.mkdir()
    elsewhere = tmp_path / "my-notes"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    result = invoke(["model", "merge-lora", lora_run, elsewhere, "--base", base, "--overwrite"])
    refused(result, "does not look like", "thesis.tex")
    assert (elsewhere / "thesis.tex").read_text() == "years of work"
    help_text = invoke(["model", "merge-lora", "--help"]).output
    assert "instead of resuming" not in help_text and "Delete an existing OUT" in help_text


def test_infer_output_equal_to_questions_is_refused_before_the_model_loads(sample, tmp_path, no_model_loading):
    questions = tmp_path / "test_q.json"
    questions.write_bytes((sample.annotations / "msvd_qa" / "test_q.json").read_bytes())
    before = digest(questions)
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    result = invoke(["infer", "qa", "--model", tmp_path, "--dataset", "msvd", "--questions", questions,
                     "--answers", sample.annotations / "msvd_qa" / "test_a.json", "--features", features,
                     "-o", questions, "--overwrite"])
    refused(result, "--output", "--questions")
    assert digest(questions) == before
    inside = invoke(["infer", "qa", "--model", tmp_path, "--dataset", "msvd", "--questions", questions,
                     "--answers", sample.annotations / "msvd_qa" / "test_a.json", "--features", features,
                     "-o", features / "preds.jsonl"])
    refused(inside, "inside --features")


def test_infer_merge_into_one_of_its_shards_is_refused(tmp_path):
    shard = tmp_path / "preds.shard-0-of-2.jsonl"
    shard.write_text('{"id": "a", "pred": "x"}\n')
    other = tmp_path / "preds.shard-1-of-2.jsonl"
    other.write_text('{"id": "b", "pred": "y"}\n')
    before = digest(tmp_path)
    refused(invoke(["infer", "merge", shard, shard, other]), "SHARD")
    refused(invoke(["infer", "merge", tmp_path / "preds.shard-0-of-2.manifest.json", shard]), "manifest")
    assert digest(tmp_path) == before


def test_score_per_sample_equal_to_predictions_is_refused(tmp_path):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"video_name": "a", "groundtruth": "a red box moves left",
                                       "pred": "a red box moves to the left"}) + "\n")
    before = digest(predictions)
    refused(invoke(["score", predictions, "--metrics", "bleu", "--per-sample", predictions]), "PREDICTIONS")
    assert digest(predictions) == before
    folder = tmp_path / "values"
    folder.mkdir()
    refused(invoke(["score", predictions, "--metrics", "bleu", "--per-sample", folder]), "--per-sample", "directory")


def test_make_tiny_refuses_an_existing_out_without_overwrite(tmp_path):
    out = tmp_path / "tiny"
    (out / "vicuna").mkdir(parents=True)
    (out / "vicuna" / "config.json").write_text('{"mine": true}')
    refused(invoke(["model", "make-tiny", out]), "already exists", "--overwrite")
    assert json.loads((out / "vicuna" / "config.json").read_text()) == {"mine": True}
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "data.csv").write_text("1,2,3")
    refused(invoke(["model", "make-tiny", stranger, "--overwrite"]), "does not look like", "data.csv")
    assert (stranger / "data.csv").read_text() == "1,2,3"


def test_make_sample_overwrite_never_removes_a_real_data_root(tmp_path):
    out = tmp_path / "data"
    (out / "DATA_ROOT" / "llava_image").mkdir(parents=True)
    (out / "DATA_ROOT" / "llava_image" / "real.jpg").write_bytes(b"real image")
    refused(invoke(["data", "make-sample", out, "--overwrite"]), "does not look like", "llava_image")
    assert (out / "DATA_ROOT" / "llava_image" / "real.jpg").read_bytes() == b"real image"


@pytest.mark.parametrize("case", ["below_a_file", "file_for_folder"])
def test_output_paths_checked_before_work(tmp_path, case, no_model_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "out" if case == "below_a_file" else blocker
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"id": "q1", "question": "q?", "answer": "a", "pred": "a"}) + "\n")
    videos = tmp_path / "videos"
    videos.mkdir()
    commands = [
        ["features", "extract", videos, target],
        ["data", "make-sample", target],
        ["model", "make-tiny", target],
        ["judge", "gpt", predictions, "--task", "qa", "--output", target, "--dry-run"],
        ["judge", "gpt", predictions, "--task", "qa", "--cache", target, "--dry-run"],
    ]
    if case == "below_a_file":
        commands.append(["score", predictions, "--per-sample", target])
    for command in commands:
        result = invoke(command)
        refused(result, str(target))
        assert blocker.read_text() == "x"


def test_train_output_dir_is_checked_before_torch_work(train_workspace):
    blocker = train_workspace / "a-file"
    blocker.write_text("x")
    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "sample_stage1.yaml"
    refused(invoke(["train", "stage1", "-c", config, "-o", blocker / "run"]), "train.output_dir", "is a file")
    inside = train_workspace / "artemis-sample" / "tiny" / "vicuna" / "run"
    refused(invoke(["train", "stage1", "-c", config, "-o", inside]), "inside model.path")
    assert not inside.exists()


def test_check_output_rules(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text("[]")
    for path, message in ((data, "same path"), (data / "sub" / "out.jsonl", "inside"), (tmp_path, "contains")):
        with pytest.raises(UsageError, match=message):
            check_output(path, kind="dir", option="-o", inputs={"--data": data})
    assert check_output(tmp_path / "new" / "deeper", kind="dir", option="-o", inputs={"--data": data})
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(UsageError, match="same path"):  # a symlink to an input is the input
        check_output(link, kind="dir", option="-o", inputs={"--data": data})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="not writable"):
            check_output(folder / "out.jsonl", kind="file", option="-o")
    finally:
        folder.chmod(0o700)


def test_check_owned_lists_what_it_found(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UsageError, match="x.txt"):
        check_owned(tmp_path, option="OUT", command="thing", markers=("marker.json",))
    (tmp_path / "marker.json").write_text("{}")
    check_owned(tmp_path, option="OUT", command="thing", markers=("marker.json",))
    check_owned(tmp_path / "missing", option="OUT", command="thing", markers=("marker.json",))
