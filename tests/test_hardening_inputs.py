"""Issue 14: every bad input the trials found is one clear `error:` line (file, record or line, field)
with the right exit code, never a traceback, never a silent success."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(args: list) -> "object":
    return runner.invoke(app, [str(a) for a in args])


def one_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.output.count("error:") == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


# ---- configs ---------------------------------------------------------------------------------------

def test_non_finite_and_huge_numbers_are_reported_with_every_other_problem(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("stage: 3\nmodel: {path: nowhere}\ndata: {root: nowhere, annotations: [x]}\n"
                      "train: {output_dir: out, save_steps: .inf, epochs: .inf, lr: 1e400, max_steps: 10000000000000000,"
                      " batch_size: 0, bogus: 1}\n")
    result = invoke(["train", "stage3", "-c", config])
    one_error(result, 2, "train.save_steps: must be a finite number", "train.epochs: must be a finite number",
              "train.lr: must be a finite number", "train.max_steps:", "out of range", "model.path", "data.root",
              "train.batch_size", "train.bogus: unknown key")
    assert "9 problem(s)" in result.output


def test_config_folder_and_set_without_equals_fail_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom artemis_cli.cli.app import app\n"
            "for args in (['train', 'stage3', '--set', 'x'], ['train', 'stage3', '-c', sys.argv[1]]):\n"
            "    r = CliRunner().invoke(app, args)\n"
            "    print(r.exit_code, repr(r.output))\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("2 ") and "expected KEY=VALUE" in lines[0], out.stdout + out.stderr
    assert lines[1].startswith("2 ") and "directory" in lines[1], out.stdout
    assert lines[-1] == "False", "a config error must not wait for torch/transformers/deepspeed"


# ---- model folders ---------------------------------------------------------------------------------

@pytest.fixture
def model_folder(tiny_artemis_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_artemis_dir, folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("changes, needle", [
    ({"hidden_size": "64"}, "hidden_size: expected a whole number, got str '64'"),
    ({"num_hidden_layers": -2}, "num_hidden_layers: -2 is out of range"),
    ({"num_attention_heads": 5}, "num_attention_heads: 5 does not divide hidden_size 64"),
    ({"rms_norm_eps": "tiny"}, "rms_norm_eps: expected a number"),
])
def test_config_json_fields_are_checked(model_folder, changes, needle):
    edit_config(model_folder, **changes)
    result = invoke(["model", "inspect", model_folder])
    one_error(result, 1, str(model_folder / "config.json"), needle)
    assert "unexpected" not in result.output  # not reported as "18 unexpected weights"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_broken_safetensors_is_a_clear_error(model_folder, damage):
    weights = model_folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 50)
    one_error(invoke(["model", "inspect", model_folder]), 1, "model.safetensors", "not a readable safetensors file")


def test_broken_zip_bin_and_bad_shard_index(model_folder):
    (model_folder / "model.safetensors").unlink()
    (model_folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    one_error(invoke(["model", "inspect", model_folder]), 1, "pytorch_model.bin", "not a readable PyTorch weights file")
    (model_folder / "pytorch_model.bin").unlink()
    (model_folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["a", "b"]}))
    one_error(invoke(["model", "inspect", model_folder]), 1, "weight_map must be an object")


def test_truncated_adapter_config_and_adapter_without_lora_tensors(tmp_path, tiny_artemis_dir):
    from safetensors.torch import save_file
    import torch

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_artemis_dir / "config.json", run / "config.json")
    (run / "adapter_config.json").write_text('{"r": 16, "lora_alpha"')
    torch.save({}, run / "non_lora_trainables.bin")
    save_file({"base_model.model.lm_head.weight": torch.zeros(2, 2)}, str(run / "adapter_model.safetensors"))
    out = tmp_path / "merged"
    result = invoke(["model", "merge-lora", run, out, "--base", tiny_artemis_dir])
    one_error(result, 1, "adapter_config.json", "invalid JSON")
    (run / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 16, "target_modules": ["q_proj"]}))
    result = invoke(["model", "merge-lora", run, out, "--base", tiny_artemis_dir])
    one_error(result, 1, "holds no LoRA tensors")  # it used to exit 0 and write the base model as "merged"
    assert not out.exists()


# ---- data verify-layout ------------------------------------------------------------------------------

def referring_record(**changes) -> dict:
    record = {"clip_path": "HC-STVG/clip_feature/hcstvg_000.pkl", "caption": "a box moves",
              "frame_path": "HC-STVG/frames/hcstvg_000", "frame_id": ["00001.jpg", "00002.jpg"],
              "track_list": [[1, 1, 20, 20], [2, 2, 21, 21]], "key_frame_id": "00001.jpg",
              "key_frame_box": [1, 1, 20, 20]}
    record.update(changes)
    return record


@pytest.mark.parametrize("box, needle", [
    ([1, 1, 500, 20], "reaches outside the 96x64 frame"),
    ([200, 1, 300, 20], "starts outside the 96x64 frame"),
    ([-5, 1, 20, 20], "negative coordinate"),
    ([1, 1, float("inf"), 20], "not a finite number"),
    ([1, 1, 1e9, 20], "above 100000 pixels"),
    ([30, 1, 20, 20], "x1 < x2"),
])
def test_verify_layout_checks_boxes_against_the_real_frame(sample, tmp_path, box, needle):
    annotations = tmp_path / "ann"
    annotations.mkdir()
    (annotations / "stage3.json").write_text(json.dumps([referring_record(key_frame_box=box)]))
    result = invoke(["data", "verify-layout", sample.data_root, "--annotations", annotations, "--stage", "3", "--json"])
    assert result.exit_code == 1, result.output
    problems = json.loads(result.stdout)["problems"]
    assert any(p.get("field") == "key_frame_box" and needle in p["message"] for p in problems), problems


def test_verify_layout_symlink_loop_under_annotations(sample, tmp_path):
    annotations = tmp_path / "ann"
    annotations.mkdir()
    (annotations / "loop.json").symlink_to(annotations / "loop2.json")
    (annotations / "loop2.json").symlink_to(annotations / "loop.json")
    (annotations / "sub").mkdir()
    (annotations / "sub" / "up").symlink_to(annotations, target_is_directory=True)
    result = invoke(["data", "verify-layout", sample.data_root, "--annotations", annotations, "--stage", "3", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    messages = [p["message"] for p in json.loads(result.stdout)["problems"]]
    assert any("cannot be read" in m for m in messages), messages


# ---- infer -----------------------------------------------------------------------------------------

def test_infer_reports_a_corrupt_manifest_before_loading_the_model(sample, tmp_path, monkeypatch):
    import artemis_cli.model.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    output = tmp_path / "preds.jsonl"
    output.write_text('{"id": "msvd_0_0", "pred": "box"}\n')
    (tmp_path / "preds.manifest.json").write_text('{"settings": [], "input_ids": "x"}')
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    (tmp_path / "model").mkdir()
    result = invoke(["infer", "qa", "--model", tmp_path / "model", "--dataset", "msvd", "--questions",
                     sample.annotations / "msvd_qa" / "test_q.json", "--answers",
                     sample.annotations / "msvd_qa" / "test_a.json", "--features", features, "-o", output])
    one_error(result, 1, "preds.manifest.json", "settings: expected an object", "input_ids: expected a list")


@pytest.mark.parametrize("manifest, needle", [
    ({"settings": {}, "input_ids": ["a"]}, "runs: expected a list"),
    ({"settings": {}, "input_ids": ["a"], "runs": [], "shard": {"count": "2", "index": 0}}, "shard: expected"),
    ({"settings": {}, "input_ids": [1, 2], "runs": [], "shard": {"count": 1, "index": 0}}, "input_ids"),
    ({"input_ids": ["a"]}, "no settings / input_ids"),
])
def test_infer_merge_checks_shard_manifests(tmp_path, manifest, needle):
    shard = tmp_path / "preds.shard-0-of-1.jsonl"
    shard.write_text('{"id": "a", "pred": "x"}\n')
    (tmp_path / "preds.shard-0-of-1.manifest.json").write_text(json.dumps(manifest))
    one_error(invoke(["infer", "merge", tmp_path / "merged.jsonl", shard]), 1, "manifest", needle)
    assert not (tmp_path / "merged.jsonl").exists()


# ---- smaller commands ------------------------------------------------------------------------------

def test_make_sample_sizes_are_bounded_and_nothing_is_written(tmp_path):
    out = tmp_path / "sample"
    one_error(invoke(["data", "make-sample", out, "--feature-dim", 10**12]), 2, "--feature-dim", "16384")
    one_error(invoke(["data", "make-sample", out, "--videos", 10**6]), 2, "--videos")
    assert not out.exists()


def test_doctor_path_missing_says_so(tmp_path):
    missing = tmp_path / "not-here"
    one_error(invoke(["doctor", "--path", missing]), 2, "--path", "does not exist")
    from artemis_cli.doctor import check_disk

    check = check_disk(missing)
    assert check.status == "fail" and "does not exist" in check.detail and str(tmp_path) in check.detail


def test_score_names_an_empty_predictions_file(tmp_path):
    empty = tmp_path / "preds.jsonl"
    empty.write_text("")
    one_error(invoke(["score", empty, "--metrics", "bleu"]), 1, str(empty), "no prediction records")


def test_judge_gpt_predictions_help_existence_and_cache_file(tmp_path):
    help_text = invoke(["judge", "gpt", "--help"]).output
    assert "PREDICTIONS" in help_text and "Predictions (.jsonl" in help_text
    assert "ARTEMIS_JUDGE_MODEL" in help_text  # no default judge model (hosted judges retire): the user names one
    one_error(invoke(["judge", "gpt", tmp_path / "missing.jsonl", "--task", "qa", "--dry-run"]), 2, "does not exist")
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"id": "q1", "question": "q?", "answer": "a", "pred": "a"}) + "\n")
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    for extra in ([], ["--dry-run"]):
        one_error(invoke(["judge", "gpt", predictions, "--task", "qa", "--cache", cache, *extra]), 2, "--cache",
                  "is a file")
    dry = invoke(["judge", "gpt", predictions, "--task", "qa", "--cache", tmp_path / "c", "--dry-run", "--json",
                  "--model", "judge-2025-01-01"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["model"] == "judge-2025-01-01"
