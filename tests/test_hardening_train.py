"""Issue 14: training checkpoints survive a kill at any moment.

The two ways the kill trials lost work, rebuilt on disk: a checkpoint whose trainer_state.json was
opened but not written (``--resume`` used to pick it and fail), and a rotation killed halfway through
deleting an old checkpoint (the next rotation counted it and deleted a newer, complete one). Plus the
stray temp file of a kill between writing and renaming a final file, and one real run resumed past a
broken newest checkpoint."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import UsageError
from artemis_cli.train.checkpoints import (COMPLETE_MARKER, checkpoint_problem, checkpoints, mark_complete,
                                           newest_complete, rotate)
from artemis_cli.train.run import prepare_output_dir

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def torch_file(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())


def stage3_checkpoint(run: Path, step: int, *, marker: bool = True) -> Path:
    """A checkpoint folder with every file a stage-3 checkpoint has (tiny tensors)."""
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "config.json").write_text("{}")
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(4, 8)}, str(folder / "adapter_model.safetensors"))
    torch_file(folder / "non_lora_trainables.bin", {"roi.weight": torch.zeros(2)})
    torch_file(folder / "optimizer.pt", {"state": {}, "param_groups": []})
    torch_file(folder / "scheduler.pt", {"last_epoch": step})
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if marker:
        mark_complete(folder, step)
    return folder


def test_resume_skips_a_checkpoint_killed_while_writing_trainer_state(tmp_path, capsys):
    run = tmp_path / "run"
    stage3_checkpoint(run, 2)
    stage3_checkpoint(run, 4)
    broken = stage3_checkpoint(run, 6, marker=False)
    (broken / "trainer_state.json").write_text("")  # opened for writing, then the kill
    chosen = prepare_output_dir(run, resume=True, overwrite=False, stage=3)
    assert chosen == run / "checkpoint-4"
    said = capsys.readouterr().err
    assert "skipping checkpoint-6" in said and COMPLETE_MARKER in said
    assert [p.name for p in checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]  # its own incomplete one went


@pytest.mark.parametrize("damage", ["empty_state", "truncated_adapter", "truncated_optimizer", "no_scheduler"])
def test_unreadable_files_make_a_checkpoint_incomplete(tmp_path, damage):
    folder = stage3_checkpoint(tmp_path / "run", 2, marker=False)
    if damage == "empty_state":
        (folder / "trainer_state.json").write_text("")
    elif damage == "truncated_adapter":
        data = (folder / "adapter_model.safetensors").read_bytes()
        (folder / "adapter_model.safetensors").write_bytes(data[: len(data) - 10])
    elif damage == "truncated_optimizer":
        data = (folder / "optimizer.pt").read_bytes()
        (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])
    else:
        (folder / "scheduler.pt").unlink()
    assert checkpoint_problem(folder, 3, require_marker=False) is not None
    folder_ok = stage3_checkpoint(tmp_path / "other", 2, marker=False)
    assert checkpoint_problem(folder_ok, 3, require_marker=False) is None  # a run from before the marker


def test_resume_with_no_complete_checkpoint_says_why(tmp_path):
    run = tmp_path / "run"
    broken = stage3_checkpoint(run, 2, marker=False)
    (broken / "non_lora_trainables.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UsageError, match="no complete checkpoint") as info:
        prepare_output_dir(run, resume=True, overwrite=False, stage=3)
    assert "non_lora_trainables.bin" in info.value.message


def test_rotation_never_counts_a_half_deleted_checkpoint(tmp_path):
    """save_total_limit=2: a kill inside the rotation left checkpoint-2 half deleted (marker gone). The next
    rotation removes it and keeps the two newest complete ones, never deleting checkpoint-6 instead."""
    run = tmp_path / "run"
    half = stage3_checkpoint(run, 2)
    stage3_checkpoint(run, 4)
    stage3_checkpoint(run, 6)
    (half / COMPLETE_MARKER).unlink()  # the rotation removes the marker first ...
    (half / "optimizer.pt").unlink()   # ... and was killed after deleting one more file
    current = stage3_checkpoint(run, 8)
    removed = rotate(run, 2, current, 3)
    assert [p.name for p in checkpoints(run)] == ["checkpoint-6", "checkpoint-8"]
    assert sorted(p.name for p in removed) == ["checkpoint-2", "checkpoint-4"]


def test_rotation_sorts_by_step_not_mtime(tmp_path):
    run = tmp_path / "run"
    old = stage3_checkpoint(run, 2)
    stage3_checkpoint(run, 4)
    (old / "config.json").write_text("{}")  # touched last: the newest mtime
    current = stage3_checkpoint(run, 6)
    rotate(run, 2, current, 3)
    assert [p.name for p in checkpoints(run)] == ["checkpoint-4", "checkpoint-6"]


def test_resume_removes_the_stray_temps_of_the_killed_run(tmp_path):
    run = tmp_path / "run"
    stage3_checkpoint(run, 2)
    (run / "train_config.yaml").write_text("stage: 3\n")
    strays = [run / ".non_lora_trainables.bin.k2j_x9ab.tmp", run / ".manifest.json.abcdefgh.tmp",
              run / "checkpoint-2" / ".non_lora_trainables.bin.zz00zz00.tmp"]
    for stray in strays:
        stray.write_bytes(b"half")
    someone_elses = run / ".notes.txt.abcdefgh.tmp"
    someone_elses.write_text("not ours")
    prepare_output_dir(run, resume=True, overwrite=False, stage=3)
    assert not any(p.exists() for p in strays)
    assert someone_elses.exists()


@pytest.mark.slow
def test_a_real_run_resumes_past_a_broken_newest_checkpoint(train_workspace):
    """Stage 1 on the sample (4 steps, a checkpoint every 2), then checkpoint-4 broken as the kill
    trials left it: --resume continues from checkpoint-2, exits 0, and says what it skipped."""
    config = REPO / "examples" / "configs" / "sample_stage1.yaml"
    run = train_workspace / "artemis-sample" / "runs" / "stage1"
    first = runner.invoke(app, ["train", "stage1", "-c", str(config), "--json"])
    assert first.exit_code == 0, first.output
    assert all((p / COMPLETE_MARKER).is_file() for p in checkpoints(run))
    (run / "checkpoint-4" / "trainer_state.json").write_text("")
    (run / "checkpoint-4" / COMPLETE_MARKER).unlink()
    (run / ".mm_projector.bin.abcd1234.tmp").write_bytes(b"half")
    again = runner.invoke(app, ["train", "stage1", "-c", str(config), "--resume", "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 4
    assert "skipping checkpoint-4" in again.stderr
    assert not (run / ".mm_projector.bin.abcd1234.tmp").exists()
    assert (run / "checkpoint-4" / COMPLETE_MARKER).is_file()  # written again, completely
