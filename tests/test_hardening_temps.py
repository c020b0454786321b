"""Issue 14: a rerun after a kill removes the stray temp files of its own earlier run, and only those.

A kill between a temp file's fsync and its rename (``atomic_open``) leaves ``.<name>.<8 chars>.tmp``
beside ``<name>``. The kill trials found ``.manifest.json.*.tmp`` (features), ``.preds.manifest.json.*.tmp``
(infer), ``.run.json.*.tmp`` and ``.summary.json.*.tmp`` (judge) that no rerun cleaned up."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.common.temps import remove_stray_temps, temp_target

runner = CliRunner()


def plant(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f".{name}.k2j_x9ab.tmp" for name in names]
    for path in paths:
        path.write_bytes(b"half-written")
    return paths


def test_temp_names_and_only_own_names_are_removed(tmp_path):
    assert temp_target(".manifest.json.k2j_x9ab.tmp") == "manifest.json"
    assert temp_target(".manifest.json.tmp") is None and temp_target("manifest.json") is None
    ours = plant(tmp_path, "manifest.json", "a.pkl")
    theirs = plant(tmp_path, "b.pkl", "notes.txt")
    (tmp_path / "sub").mkdir()
    below = plant(tmp_path / "sub", "manifest.json")
    removed = remove_stray_temps(tmp_path, {"manifest.json", "a.pkl"})
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in theirs + below)  # another shard's, another tool's, another folder's


def test_features_rerun_removes_its_stray_temps(sample, tiny_clip_dir, tmp_path):
    videos = sample.data_root / "Artemis_data" / "HC-STVG" / "videos"
    out = tmp_path / "features"
    ours = plant(out, "manifest.json", "failures.jsonl", "hcstvg_000.pkl")
    other = plant(out, "someone-else.pkl")
    result = runner.invoke(app, ["features", "extract", str(videos), str(out), "--model", str(tiny_clip_dir),
                                 "--device", "cpu", "--workers", "0", "--num-frames", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in ours) and all(p.exists() for p in other)


def test_infer_rerun_removes_its_stray_temps(sample, tiny_artemis_dir, tmp_path):
    out = tmp_path / "preds.jsonl"
    ours = plant(tmp_path, "preds.manifest.json", "preds.jsonl", "preds.errors.jsonl")
    other = plant(tmp_path, "other.manifest.json")
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    result = runner.invoke(app, ["infer", "qa", "--model", str(tiny_artemis_dir), "--dataset", "msvd",
                                 "--questions", str(sample.annotations / "msvd_qa" / "test_q.json"),
                                 "--answers", str(sample.annotations / "msvd_qa" / "test_a.json"),
                                 "--features", str(features), "-o", str(out), "--max-new-tokens", "2",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in ours) and all(p.exists() for p in other)


def test_judge_rerun_removes_its_stray_temps(tmp_path):
    from artemis_cli.judge import JudgeOptions, judge

    def create(model, messages, **kwargs):
        message = SimpleNamespace(content='{"score": 4}')
        return SimpleNamespace(model=model, choices=[SimpleNamespace(message=message)],
                               usage=SimpleNamespace(prompt_tokens=10, completion_tokens=2))

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    out = tmp_path / "out"
    ours = plant(out, "run.json", "summary.json", "manifest.json")
    other = plant(out, "notes.md")
    records = [{"video_name": "v", "Q": "q", "A": "a", "pred": "p"}]
    judge(records, JudgeOptions(task="correctness", model="m", cache_dir=tmp_path / "cache", output_dir=out,
                                show_progress=False), client=client)
    assert json.loads((out / "summary.json").read_text())["n_judged"] == 1
    assert not any(p.exists() for p in ours) and all(p.exists() for p in other)
