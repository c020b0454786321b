"""Checkpoint round trips: merged, LoRA run + base (unmerged and merged), projector-only + base."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file

from artemis_cli.errors import InputError, UsageError
from artemis_cli.model.conversation import chat_prompt, tokenize_prompt
from artemis_cli.model.loading import load_model, merge_lora, save_model

WIDTH = 64


def probe_inputs(tokenizer):
    ids = torch.tensor([tokenize_prompt(chat_prompt("<image>\nDescribe the video in detail."), tokenizer)])
    media = [[torch.randn(356, WIDTH, generator=torch.Generator().manual_seed(0))]]
    return ids, media


def logits(model, tokenizer):
    ids, media = probe_inputs(tokenizer)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), media=media).logits


def non_tower_state(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("model.image_tower.")}


def write_checkpoint(folder, model, config_changes=None, drop_prefix=None, fmt="safetensors"):
    """A hand-made checkpoint folder: config.json + one weight file (+ tokenizer files copied by caller)."""
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in non_tower_state(model).items()
             if not (drop_prefix and k.startswith(drop_prefix))}
    config = model.config.to_dict()
    config.update(config_changes or {})
    (folder / "config.json").write_text(json.dumps(config))
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_merged_round_trip_is_exact(tiny_artemis, tiny_artemis_dir):
    model, tokenizer, _ = tiny_artemis
    loaded = load_model(tiny_artemis_dir, device="cpu", dtype="float32")
    assert loaded.kind == "merged" and loaded.image_processor is not None
    original, reloaded = non_tower_state(model), non_tower_state(loaded.model)
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    tower_a = model.model.image_tower.state_dict()
    tower_b = loaded.model.model.image_tower.state_dict()
    assert all(torch.equal(tower_a[k], tower_b[k]) for k in tower_a)
    assert torch.equal(logits(model, tokenizer), logits(loaded.model, loaded.tokenizer))
    assert loaded.tokenizer("hello").input_ids == tokenizer("hello").input_ids
    assert not any(p.requires_grad for p in loaded.model.model.image_tower.parameters())


def test_bin_checkpoint_with_legacy_rotary_buffers(tiny_artemis, tiny_artemis_dir, tmp_path):
    model, tokenizer, _ = tiny_artemis
    folder = write_checkpoint(tmp_path / "bin", model, fmt="bin")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # Vicuna v1.5 files carry these
    torch.save(state, folder / "pytorch_model.bin")
    tokenizer.save_pretrained(folder)
    loaded = load_model(folder, device="cpu", dtype="float32")
    assert torch.equal(logits(model, tokenizer), logits(loaded.model, loaded.tokenizer))


@dataclass
class NotATensor:
    value: int


def test_missing_mismatched_and_unsafe_weights_are_errors(tiny_artemis, tmp_path):
    model, tokenizer, _ = tiny_artemis
    folder = write_checkpoint(tmp_path / "missing", model, drop_prefix="model.spi_model.roi_align.updims")
    tokenizer.save_pretrained(folder)
    with pytest.raises(InputError, match=r"2 missing: model\.spi_model\.roi_align\.updims\.bias, "
                                         r"model\.spi_model\.roi_align\.updims\.weight"):
        load_model(folder, device="cpu")
    bad = write_checkpoint(tmp_path / "shape", model, config_changes={"mm_hidden_size": 32})
    with pytest.raises(InputError, match=r"mismatched: model\.mm_projector\.0\.weight: checkpoint \[64, 64\] vs model \[64, 32\]"):
        load_model(bad, device="cpu")
    unsafe = tmp_path / "unsafe"
    write_checkpoint(unsafe, model, fmt="bin")
    torch.save({"model.norm.weight": NotATensor(1)}, unsafe / "pytorch_model.bin")
    with pytest.raises(InputError, match="refused to load"):
        load_model(unsafe, device="cpu")


@pytest.fixture(scope="module")
def stage2_base(tiny_artemis, tmp_path_factory):
    """A stage-2-like base: same LLM and projector, no RoI module in config or weights."""
    model, tokenizer, _ = tiny_artemis
    folder = write_checkpoint(tmp_path_factory.mktemp("base") / "stage2", model,
                              config_changes={"mm_spi_model": False, "k_means": False}, drop_prefix="model.spi_model.")
    tokenizer.save_pretrained(folder)
    return folder


def make_lora_run(tiny_artemis, folder):
    """Train-like LoRA run: adapter on the Llama projections, changed projector/RoI saved as the
    published `non_lora_trainables.bin` (names with the peft prefixes)."""
    from peft import LoraConfig, get_peft_model

    from artemis_cli.model.llava import LORA_TARGET_MODULES

    model, tokenizer, _ = tiny_artemis
    trained = copy.deepcopy(model)
    tower = trained.model.image_tower
    del trained.model.image_tower  # LoRA goes on before the tower, as in the published run
    peft_model = get_peft_model(trained, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES,
                                                    lora_dropout=0.0, task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data = 0.2 * torch.randn(param.shape, generator=generator)
        if ".spi_model." in name or ".mm_projector." in name:
            param.requires_grad_(True)
            param.data += 0.05 * torch.randn(param.shape, generator=generator)
    assert not any("image_tower" in n for n, _ in peft_model.named_parameters())
    peft_model.save_pretrained(folder)
    non_lora = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n and p.requires_grad}
    assert all(n.startswith("base_model.model.model.") for n in non_lora)
    torch.save(non_lora, folder / "non_lora_trainables.bin")
    model.config.save_pretrained(folder)
    trained.model.image_tower = tower
    return peft_model, non_lora


def test_lora_run_plus_base_and_merge_give_the_same_logits(tiny_artemis, stage2_base, tmp_path):
    model, tokenizer, _ = tiny_artemis
    run = tmp_path / "run"
    peft_model, non_lora = make_lora_run(tiny_artemis, run)
    with pytest.raises(UsageError, match="LoRA checkpoint: it needs --model-base"):
        load_model(run, device="cpu")
    loaded = load_model(run, stage2_base, device="cpu", dtype="float32")
    assert loaded.kind == "lora"
    assert not any("lora_" in n for n, _ in loaded.model.named_parameters())
    state = loaded.model.state_dict()
    for name, value in non_lora.items():  # RoI module and projector come from non_lora_trainables.bin
        assert torch.equal(state[name.removeprefix("base_model.model.")], value)
    peft_model.base_model.model.model.image_tower = model.model.image_tower
    expected = logits(peft_model, tokenizer)  # unmerged adapter
    got = logits(loaded.model, loaded.tokenizer)
    assert not torch.allclose(got, logits(model, tokenizer), atol=1e-3)  # the adapter changed something
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    merged_dir = merge_lora(run, stage2_base, tmp_path / "merged", dtype="float32")
    merged = load_model(merged_dir, device="cpu", dtype="float32")
    assert merged.kind == "merged"
    assert torch.equal(logits(merged.model, merged.tokenizer), got)
    with pytest.raises(UsageError, match="already exists"):
        merge_lora(run, stage2_base, merged_dir)


def test_projector_only_checkpoint(tiny_artemis, stage2_base, tmp_path):
    model, tokenizer, _ = tiny_artemis
    run = tmp_path / "stage1"
    run.mkdir()
    config = model.config.to_dict()
    config.update({"mm_spi_model": False, "k_means": False})
    (run / "config.json").write_text(json.dumps(config))
    projector = {k: v + 1.0 for k, v in model.state_dict().items() if k.startswith("model.mm_projector.")}
    torch.save(projector, run / "mm_projector.bin")
    loaded = load_model(run, stage2_base, device="cpu", dtype="float32")
    assert loaded.kind == "projector" and loaded.model.get_roi_module() is None
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in projector.items())
    assert torch.equal(state["model.layers.1.mlp.up_proj.weight"], model.state_dict()["model.layers.1.mlp.up_proj.weight"])


def test_fresh_roi_module_on_a_stage2_base(stage2_base):
    with pytest.raises(InputError, match="missing: model.spi_model"):
        load_model(stage2_base, device="cpu", config_overrides={"mm_spi_model": True})
    loaded = load_model(stage2_base, device="cpu", config_overrides={"mm_spi_model": True, "k_means": True},
                        allow_missing=("model.spi_model.",))
    roi = loaded.model.get_roi_module()
    assert roi is not None and not any(p.is_meta for p in roi.parameters())
    std = roi.roi_align.pconvs[0].weight.std().item()
    assert 0.008 < std < 0.012 and roi.roi_align.pconvs[0].bias.abs().sum() == 0  # N(0, 0.01) as the reference


def test_save_refuses_to_overwrite_and_dtype_choice(tiny_artemis, tiny_artemis_dir, tmp_path):
    model, tokenizer, _ = tiny_artemis
    with pytest.raises(UsageError, match="already exists"):
        save_model(model, tokenizer, tiny_artemis_dir)
    half = load_model(tiny_artemis_dir, device="cpu", dtype="bfloat16")
    assert half.model.lm_head.weight.dtype == torch.bfloat16
    assert half.model.model.rotary_emb.inv_freq.dtype == torch.float32
    with pytest.raises(UsageError, match="--dtype float8"):
        load_model(tiny_artemis_dir, device="cpu", dtype="float8")


def test_plain_llama_checkpoint_becomes_artemis_with_fresh_projector(tiny_artemis, tiny_clip_dir, tmp_path):
    """Stage 1 starts from Vicuna: a model_type "llama" folder plus the published mm settings."""
    from artemis_cli.model.config import default_mm_settings

    model, tokenizer, _ = tiny_artemis
    folder = tmp_path / "vicuna"
    folder.mkdir()
    llm = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(("model.layers.", "model.embed_tokens",
                                                                                      "model.norm", "lm_head"))}
    save_file(llm, str(folder / "model.safetensors"))
    config = {k: v for k, v in model.config.to_dict().items() if not k.startswith("mm_") and k not in ("k_means",)}
    config["model_type"] = "llama"
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    overrides = default_mm_settings(str(tiny_clip_dir), WIDTH, roi=False, k_means=False)
    loaded = load_model(folder, device="cpu", config_overrides=overrides, allow_missing=("model.mm_projector.",))
    assert loaded.model.get_roi_module() is None and loaded.image_processor is not None
    assert len(loaded.tokenizer) == len(tokenizer)  # no <im_patch> token added
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in llm.items())
    assert state["model.mm_projector.0.weight"].shape == (64, WIDTH)
    with pytest.raises(InputError, match="missing: model.mm_projector"):
        load_model(folder, device="cpu", config_overrides=overrides)


def test_a_clip_folder_without_tower_weights_is_refused(tiny_clip_dir, tmp_path):
    """transformers would fill the tower at random and only warn; features or a model on it would be garbage."""
    import shutil

    from safetensors.torch import load_file

    from artemis_cli.model.tower import load_clip_vision

    assert load_clip_vision(str(tiny_clip_dir)).config.hidden_size == 64
    broken = tmp_path / "renamed"
    shutil.copytree(tiny_clip_dir, broken)
    state = load_file(broken / "model.safetensors")
    save_file({f"other.{name}": value for name, value in state.items()}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(InputError) as caught:
        load_clip_vision(str(broken))
    assert f"{broken}: not a complete CLIP vision tower" in str(caught.value) and "missing" in str(caught.value)
    assert "patch_embedding" in str(caught.value) or "embeddings" in str(caught.value)

    from typer.testing import CliRunner

    from artemis_cli.cli.app import app

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"never decoded: the tower is checked first")
    result = CliRunner().invoke(app, ["features", "extract", str(videos), str(tmp_path / "out"), "--model", str(broken)])
    assert result.exit_code != 0 and "not a complete CLIP vision tower" in result.output
    assert "Traceback" not in result.output
