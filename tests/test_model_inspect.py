"""`artemis model inspect` through the CLI: meta-device build, groups, and file comparison."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from artemis_cli.cli.app import app

runner = CliRunner()

VICUNA_7B = {
    "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "torch_dtype": "float16",
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "mm_image_tower": "/path/to/clip-vit-large-patch14",
    "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 1024, "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "mm_spi_model": True, "k_means": True, "mm_use_im_patch_token": False,
    "mm_use_im_start_end": False, "tokenizer_model_max_length": 3072,
}


def run_json(*args):
    result = runner.invoke(app, ["model", "inspect", *map(str, args), "--json"])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def test_tiny_checkpoint_matches(tiny_artemis, tiny_artemis_dir):
    model = tiny_artemis[0]
    result, data = run_json(tiny_artemis_dir)
    assert result.exit_code == 0, result.output
    state = model.state_dict()
    assert data["total"] == sum(t.numel() for t in state.values())
    assert data["parameters"]["model.mm_projector.2.weight"] == [64, 64]
    assert data["parameters"]["model.spi_model.roi_align.flatten_linear.weight"] == [128, 64 * 14 * 14]
    assert set(data["groups"]) == {"llm", "projector", "roi", "tower"}
    assert data["groups"]["projector"]["parameters"] == sum(
        t.numel() for k, t in state.items() if k.startswith("model.mm_projector."))
    assert data["missing"] == data["unexpected"] == data["mismatched"] == []
    assert data["kind"] == "merged"


def test_missing_weights_exit_1_and_are_listed(tiny_artemis, tmp_path):
    model, tokenizer, _ = tiny_artemis
    folder = tmp_path / "broken"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not k.startswith("model.image_tower.") and not k.startswith("model.mm_projector.2")}
    state["model.extra.weight"] = torch.zeros(2)
    state["lm_head.weight"] = torch.zeros(3, 64)
    save_file(state, str(folder / "model.safetensors"))
    model.config.save_pretrained(folder)
    result, data = run_json(folder)
    assert result.exit_code == 1
    assert data["missing"] == ["model.mm_projector.2.bias", "model.mm_projector.2.weight"]
    assert data["unexpected"] == ["model.extra.weight"]
    assert data["mismatched"] == [f"lm_head.weight: checkpoint [3, 64] vs model [{model.config.vocab_size}, 64]"]
    human = runner.invoke(app, ["model", "inspect", str(folder)])
    assert human.exit_code == 1
    assert "missing: 2" in human.stdout and "weights do NOT match" in human.stdout


def test_lora_folder_without_base_checks_its_own_files(tiny_artemis, tmp_path):
    model = tiny_artemis[0]
    folder = tmp_path / "lora"
    folder.mkdir()
    model.config.save_pretrained(folder)
    (folder / "adapter_config.json").write_text("{}")
    non_lora = {"base_model.model." + k: v for k, v in model.state_dict().items() if k.startswith("model.spi_model.")}
    torch.save(non_lora, folder / "non_lora_trainables.bin")
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 64),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(64, 4),
               "base_model.model.model.layers.0.self_attn.nope.lora_A.weight": torch.zeros(4, 64),
               "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(4, 7)},
              str(folder / "adapter_model.safetensors"))
    result, data = run_json(folder)
    assert data["kind"] == "lora" and result.exit_code == 1
    # only the projector is missing: the LLM comes from the base, which was not given
    assert all(name.startswith("model.mm_projector.") for name in data["missing"]) and len(data["missing"]) == 4
    assert any("no module model.layers.0.self_attn.nope" in m for m in data["mismatched"])
    assert any("up_proj.lora_A.weight: [4, 7] does not fit" in m for m in data["mismatched"])
    assert not any("q_proj" in m for m in data["mismatched"])


def test_7b_config_on_the_meta_device(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(VICUNA_7B))
    result, data = run_json(config)
    assert result.exit_code == 0, result.output
    groups = {name: entry["parameters"] for name, entry in data["groups"].items()}
    assert groups == {"llm": 6_738_415_616, "projector": 20_979_712, "roi": 299_142_912, "tower": 303_179_776}
    assert data["total"] == sum(groups.values())
    assert data["groups"]["llm"]["dtypes"] == ["float16"]
    assert data["parameters"]["model.spi_model.roi_align.flatten_linear.weight"] == [1024, 200704]
    assert data["parameters"]["model.mm_projector.0.weight"] == [4096, 1024]
    # transformers 5 dropped CLIPVisionModel's `vision_model.` level from the names; 4.x has it
    patch = [v for k, v in data["parameters"].items()
             if k.startswith("model.image_tower.vision_tower.") and k.endswith("embeddings.patch_embedding.weight")]
    assert patch == [[1024, 3, 14, 14]]
    human = runner.invoke(app, ["model", "inspect", str(config)])
    assert human.exit_code == 0 and "6,738,415,616" in human.stdout


def test_unknown_tower_and_missing_path(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**VICUNA_7B, "num_hidden_layers": 1, "mm_image_tower": "someone/other-tower"}))
    result = runner.invoke(app, ["model", "inspect", str(config)])
    assert result.exit_code == 2
    assert "error:" in result.output and "someone/other-tower" in result.output
    missing = runner.invoke(app, ["model", "inspect", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output  # a missing input is bad usage


def test_a_yaml_or_non_json_config_gets_a_hint_at_config_json(tmp_path):
    (tmp_path / "stage3.yaml").write_text("model:\n  path: x\n")
    result = runner.invoke(app, ["model", "inspect", str(tmp_path / "stage3.yaml")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'stage3.yaml'}: a YAML file, not a model config",
        "hint: pass a checkpoint folder or its config.json (a transformers model config, JSON); a training config "
        "(YAML) goes to `artemis train stageN --config`"]
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("model_type: llava\n")
    broken = runner.invoke(app, ["model", "inspect", str(tmp_path / "ckpt")])
    assert broken.exit_code == 1 and "invalid JSON" in broken.stderr and "hint: pass a checkpoint folder" in broken.stderr
