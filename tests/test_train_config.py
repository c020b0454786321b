"""Run configs of `artemis train`: every shipped config validates, the published recipes, aggregated errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import ConfigError
from artemis_cli.train.config import DEEPSPEED_NAMES, load_train_config
from artemis_cli.train.launch import deepspeed_config_path

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
runner = CliRunner()


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_published_recipe_configs_validate_and_match_reference(stage):
    path = CONFIGS / f"stage{stage}.yaml"
    config = load_train_config(stage, path, check_paths=False)
    t = config.train
    expected = {1: (1, 32, 1, 1e-3, "cosine", "bf16", "zero2"),
                2: (1, 16, 1, 2e-5, "cosine", "bf16", "zero2_offload"),
                3: (3, 6, 20, 4e-5, "constant", "fp16", "zero2_offload")}[stage]
    assert (t.epochs, t.batch_size, t.grad_accum, t.lr, t.scheduler, t.precision, t.deepspeed) == expected
    assert t.warmup_ratio == 0.03 and t.weight_decay == 0 and t.gradient_checkpointing and t.tf32
    assert config.model.max_length == 2048 and config.model.tokenizer_model_max_length == 3072
    assert 1 <= t.save_steps < 1000  # leaves checkpoints (the published 24000/50000 left none)
    assert config.data.group_by == ("none" if stage == 1 else "modality")
    if stage == 3:
        assert (config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.bias) == (16, 16, 0.05, "none")
        assert config.model.k_means and config.model.kmeans_n_clusters == 4 and config.data.num_tracked == 8
        roi = config.model.roi
        assert (roi.num_levels, roi.num_fuse, roi.query_size, roi.output_size) == (4, 5, 1024, 14)
    else:
        assert config.lora is None
    # The file spells out what the stage defaults would give anyway.
    bare = load_train_config(stage, None, [f"model.path={config.model.path}", f"data.root={config.data.root}",
                                           "data.annotations=[a.json]", f"train.output_dir={t.output_dir}"],
                             check_paths=False)
    assert bare.train.model_dump(exclude={"save_steps", "output_dir"}) == t.model_dump(exclude={"save_steps", "output_dir"})


def test_the_roi_settings_reach_the_stage3_model_config():
    from artemis_cli.train.model_setup import stage_overrides

    config = load_train_config(3, CONFIGS / "stage3.yaml", ["model.roi.output_size=2", "model.roi.query_size=128"],
                               check_paths=False)
    settings = stage_overrides(config, "clip", 64)
    assert (settings["roi_output_size"], settings["roi_query_size"], settings["roi_num_fuse"]) == (2, 128, 5)
    with pytest.raises(Exception, match="output_size"):
        load_train_config(3, CONFIGS / "stage3.yaml", ["model.roi.output_size=0"], check_paths=False)


def test_sample_configs_validate_with_every_path_present(train_workspace):
    for stage in (1, 2, 3):
        config = load_train_config(stage, CONFIGS / f"sample_stage{stage}.yaml", check_paths=(stage == 1))
        assert config.train.precision == "fp32" and config.train.deepspeed is None and config.data.num_workers == 0
    config = load_train_config(3, CONFIGS / "sample_stage3.yaml")  # runs/stage2 exists in the workspace
    assert Path(config.model.path).is_absolute() and config.data.root.is_dir()
    assert config.data.annotations[0].is_dir()


def test_every_shipped_yaml_is_covered():
    shipped = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert shipped == [f"{kind}stage{n}.yaml" for kind in ("sample_", "") for n in (1, 2, 3)]


def test_set_overrides_and_stage_defaults():
    config = load_train_config(3, CONFIGS / "stage3.yaml", ["train.lr=1e-4", "train.deepspeed=none",
                                                           "lora.r=8", "model.roi.num_fuse=1"], check_paths=False)
    assert config.train.lr == 1e-4 and config.train.deepspeed is None and config.lora.r == 8
    assert config.model.roi.num_fuse == 1 and config.lora.alpha == 16


def test_bad_config_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "stage": 3,
        "model": {"path": str(tmp_path), "k_mean": True},  # typo
        "data": {"root": str(tmp_path / "missing_root"), "annotations": [str(tmp_path / "nope.json")]},
        "train": {"output_dir": str(tmp_path / "run"), "lr": "fast", "batch_size": 0},
        "lora": {"r": 16, "rank": 4},
    }))
    with pytest.raises(ConfigError) as info:
        load_train_config(3, path)
    problems = info.value.problems
    assert any(p.startswith("model.k_mean: unknown key") for p in problems)
    assert any(p.startswith("data.root:") and "missing_root" in p for p in problems)
    assert any(p.startswith("data.annotations:") and "nope.json" in p for p in problems)
    assert any(p.startswith("train.lr:") and "number" in p for p in problems)
    assert any(p.startswith("train.batch_size:") for p in problems)
    assert any(p.startswith("lora.rank: unknown key") for p in problems)
    assert len(problems) == 6

    result = runner.invoke(app, ["train", "stage3", "--config", str(path)])
    assert result.exit_code == 2
    assert "error:" in result.output and "6 problem(s)" in result.output
    assert "model.k_mean: unknown key" in result.output and "train.lr:" in result.output


def test_stage_mismatch_missing_keys_and_lora_outside_stage_3(tmp_path):
    with pytest.raises(ConfigError, match="the file is for stage 3 but the command is stage1"):
        load_train_config(1, CONFIGS / "stage3.yaml", check_paths=False)
    with pytest.raises(ConfigError) as info:
        load_train_config(2, None, [], check_paths=False)
    assert {p.split(":")[0] for p in info.value.problems} == {"model.path", "data.root", "data.annotations",
                                                              "train.output_dir"}
    with pytest.raises(ConfigError, match="lora: only stage 3"):
        load_train_config(2, CONFIGS / "stage2.yaml", ["lora.r=8"], check_paths=False)
    with pytest.raises(ConfigError, match="train.deepspeed: 'zero9'"):
        load_train_config(3, CONFIGS / "stage3.yaml", ["train.deepspeed=zero9"], check_paths=False)
    with pytest.raises(ConfigError, match="train.save_steps"):
        load_train_config(3, CONFIGS / "stage3.yaml", ["train.save_steps=2.5"], check_paths=False)
    with pytest.raises(ConfigError, match="train.compile_roi: only stage 3 has an RoI module"):
        load_train_config(2, CONFIGS / "stage2.yaml", ["train.compile_roi=true"], check_paths=False)
    assert load_train_config(3, CONFIGS / "stage3.yaml", ["train.compile_roi=true"], check_paths=False).train.compile_roi


def test_shipped_deepspeed_configs_are_package_data():
    for name in DEEPSPEED_NAMES:
        data = json.loads(deepspeed_config_path(name).read_text())
        assert data["zero_optimization"]["stage"] == (3 if name.startswith("zero3") else 2)
        assert ("offload_optimizer" in data["zero_optimization"]) == name.endswith("offload")
        assert data["train_micro_batch_size_per_gpu"] == "auto" and data["bf16"]["enabled"] == "auto"
    assert deepspeed_config_path(None) is None


def test_train_help_lists_the_stages():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert all(f"stage{n}" in result.output for n in (1, 2, 3))


def test_stage_specs_hold_the_recipes_and_drive_the_stage_code():
    from artemis_cli.train.config import STAGE_DEFAULTS, STAGES
    from artemis_cli.train.outputs import OUTPUT_FILES, STAGE_FILES

    assert sorted(STAGES) == [1, 2, 3] and all(STAGES[s].defaults is STAGE_DEFAULTS[s] for s in STAGES)
    assert [STAGES[s].records for s in (1, 2, 3)] == ["conversation", "conversation", "referring"]
    assert [STAGES[s].trains for s in (1, 2, 3)] == ["projector", "llm", "lora"]
    assert all(STAGE_FILES[s] == OUTPUT_FILES[STAGES[s].output] for s in STAGES)
    assert STAGE_FILES[1][0] == "mm_projector.bin" and "non_lora_trainables.bin" in STAGE_FILES[3]
    config = load_train_config(3, CONFIGS / "stage3.yaml", check_paths=False)
    assert config.spec is STAGES[3] and config.lora is not None
    assert config.video_folders() == [config.data.root / "Artemis_data"]
    stage1 = load_train_config(1, CONFIGS / "stage1.yaml", check_paths=False)
    assert stage1.image_folders() == [stage1.data.root / "llava_image", stage1.data.root]
