"""`artemis train stage1|2|3` on the sample data with tiny models: published outputs, trainable sets,
overfitting, bad records, merge-lora."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from artemis_cli.cli.app import app

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
runner = CliRunner()
LORA_NAME = re.compile(r"base_model\.model\.model\.layers\.(\d+)\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
                       r"\.lora_[AB]\.default\.weight")


def train_cli(stage: int, *args: str):
    result = runner.invoke(app, ["train", f"stage{stage}", "-c", str(CONFIGS / f"sample_stage{stage}.yaml"), "--json",
                                 *args])
    return result


def result_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def load_bin(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_three_stages_write_the_published_files(train_workspace):
    runs = train_workspace / "artemis-sample" / "runs"
    (runs / "stage2").unlink()  # this test makes its own stage-2 model

    one = result_json(train_cli(1))
    assert one["global_step"] == 4 and one["samples"] == 3 and one["skipped"] == 0
    stage1 = runs / "stage1"
    projector = load_bin(stage1 / "mm_projector.bin")
    assert sorted(projector) == ["model.mm_projector.0.bias", "model.mm_projector.0.weight",
                                 "model.mm_projector.2.bias", "model.mm_projector.2.weight"]
    assert json.loads((stage1 / "config.json").read_text())["mm_projector_type"] == "mlp2x_gelu"
    assert sorted(p.name for p in stage1.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert {"mm_projector.bin", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= \
        {p.name for p in (stage1 / "checkpoint-2").iterdir()}
    manifest = json.loads((stage1 / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["seed"] == 42 and manifest["global_step"] == 4
    assert manifest["versions"]["torch"] and manifest["data"]["samples"] == 3
    assert (stage1 / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert list((stage1 / "tensorboard").glob("events.out.tfevents.*"))
    resolved = (stage1 / "train_config.yaml").read_text()
    assert "stage: 1" in resolved and str(train_workspace.resolve()) in resolved  # absolute paths

    two = result_json(train_cli(2))
    assert two["samples"] == 6 and two["global_step"] == 4
    stage2 = runs / "stage2"
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "generation_config.json"} <= \
        {p.name for p in stage2.iterdir()}
    from artemis_cli.model.loading import load_model

    loaded = load_model(stage2, device="cpu", dtype="float32")
    assert loaded.kind == "merged" and loaded.model.get_roi_module() is None
    state = loaded.model.state_dict()
    assert not torch.equal(state["model.mm_projector.0.weight"], projector["model.mm_projector.0.weight"])

    three = result_json(train_cli(3))
    assert three["samples"] == 4 and three["global_step"] == 6
    stage3 = runs / "stage3"
    assert {"adapter_config.json", "adapter_model.safetensors", "non_lora_trainables.bin", "config.json"} <= \
        {p.name for p in stage3.iterdir()}
    non_lora = load_bin(stage3 / "non_lora_trainables.bin")
    assert all(n.startswith(("base_model.model.model.spi_model.", "base_model.model.model.mm_projector."))
               for n in non_lora)
    assert any(".spi_model.roi_align.flatten_linear." in n for n in non_lora)
    config = json.loads((stage3 / "config.json").read_text())
    assert config["mm_spi_model"] is True and config["k_means"] is True and config["use_cache"] is True

    merged = train_workspace / "merged"
    result = runner.invoke(app, ["model", "merge-lora", str(stage3), str(merged), "--base", str(stage2), "--json"])
    assert result.exit_code == 0, result.output
    model = load_model(merged, device="cpu", dtype="float32")
    assert model.kind == "merged" and model.model.get_roi_module() is not None
    unmerged = load_model(stage3, stage2, device="cpu", dtype="float32")
    for name, value in unmerged.model.state_dict().items():
        if not name.startswith("model.image_tower."):
            torch.testing.assert_close(model.model.state_dict()[name], value)
    refused = runner.invoke(app, ["model", "merge-lora", str(stage2), str(train_workspace / "x"), "--base", str(stage2)])
    assert refused.exit_code == 2 and "not a LoRA run" in refused.output


@pytest.mark.slow
def test_trainable_parameters_per_stage_are_the_published_sets(train_workspace):
    from artemis_cli.train.config import load_train_config
    from artemis_cli.train.model_setup import build_stage_model

    def trainable(stage: int, *overrides: str) -> tuple[set[str], set[str]]:
        config = load_train_config(stage, CONFIGS / f"sample_stage{stage}.yaml", list(overrides))
        built = build_stage_model(config, device="cpu", dtype=torch.float32, upcast_trainable=False)
        names = {n for n, _ in built.model.named_parameters()}
        assert set(built.trainable) == {n for n, p in built.model.named_parameters() if p.requires_grad}
        return set(built.trainable), names

    one, all_one = trainable(1)
    assert one == {f"model.mm_projector.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    two, all_two = trainable(2, "model.path=artemis-sample/runs/stage2", "model.projector=null")
    assert two == {n for n in all_two if not n.startswith("model.image_tower.")}
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight", "model.mm_projector.0.weight"} <= two
    three, all_three = trainable(3)
    lora = {n for n in three if LORA_NAME.fullmatch(n)}
    layers = 2
    assert len(lora) == layers * 7 * 2  # q, k, v, o, gate, up, down x (A, B) per layer
    rest = three - lora
    assert rest == {n for n in all_three if n.startswith(("base_model.model.model.spi_model.",
                                                          "base_model.model.model.mm_projector."))}
    assert not any("image_tower" in n or "lm_head" in n or "embed_tokens" in n for n in three)
    assert not any("lora_" in n for n in all_three if "image_tower" in n)  # the tower never gets adapters


@pytest.mark.slow
def test_stage3_loss_goes_down_overfitting_two_records(train_workspace, sample):
    records = json.loads((sample.annotations / "stage3" / "hc_stvg_train.json").read_text())[:2]
    path = train_workspace / "two.json"
    path.write_text(json.dumps(records))
    result = train_cli(3, "--set", f"data.annotations=[{path}]", "--set", "train.max_steps=30",
                       "--set", "train.save_steps=100", "-o", "artemis-sample/runs/overfit")
    assert result_json(result)["global_step"] == 30
    state = json.loads((train_workspace / "artemis-sample/runs/overfit/trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e and "step" in e]
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, losses


def _stage3_with(train_workspace, sample, edit) -> Path:
    records = json.loads((sample.annotations / "stage3" / "hc_stvg_train.json").read_text())
    edit(records)
    path = train_workspace / "records.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.slow
def test_bad_records_stop_the_run_or_are_skipped_and_listed(train_workspace, sample):
    def bad_box(records):
        records[1]["track_list"][3] = [50, 40, 10, 5]  # x1 > x2

    path = _stage3_with(train_workspace, sample, bad_box)
    args = ("--set", f"data.annotations=[{path}]", "--set", "train.max_steps=1", "-o", "artemis-sample/runs/bad")
    stopped = train_cli(3, *args)
    assert stopped.exit_code == 1
    assert f"{path}[1]: track_list[3]" in stopped.output and "--skip-bad" in stopped.output
    assert not (train_workspace / "artemis-sample/runs/bad").exists()
    skipped = result_json(train_cli(3, *args, "--skip-bad"))
    assert skipped["samples"] == 1 and skipped["skipped"] == 1
    lines = [json.loads(line) for line in (train_workspace / "artemis-sample/runs/bad/skipped_records.jsonl")
             .read_text().splitlines()]
    assert lines == [{"record": f"{path}[1]", "phase": "check", "problem": lines[0]["problem"]}]
    assert "track_list[3]" in lines[0]["problem"]


@pytest.mark.slow
def test_a_record_that_fails_to_load_is_named_never_replaced(train_workspace, sample):
    broken = train_workspace / "broken_clip.pkl"
    broken.write_bytes(b"\x80\x04 not a pickle")

    def point_at_broken(records):
        records[0]["clip_path"] = str(broken)  # absolute: passes the existence check, fails to load

    path = _stage3_with(train_workspace, sample, point_at_broken)
    args = ("--set", f"data.annotations=[{path}]", "--set", "train.max_steps=2", "--set", "train.batch_size=1",
            "--set", "data.group_by=none", "-o", "artemis-sample/runs/load")
    stopped = train_cli(3, *args)
    assert stopped.exit_code == 1 and "failed to load" in stopped.output and f"{path}[0]" in stopped.output
    shutil.rmtree(train_workspace / "artemis-sample/runs/load")
    done = result_json(train_cli(3, *args, "--skip-bad"))
    assert done["global_step"] == 2 and done["skipped"] == 1
    lines = (train_workspace / "artemis-sample/runs/load/skipped_records.jsonl").read_text().splitlines()
    entry = json.loads(lines[0])
    assert len(lines) == 1 and entry["record"] == f"{path}[0]" and entry["phase"] == "load"
    assert "broken_clip.pkl" in entry["problem"]


@pytest.mark.slow
def test_mixed_precision_bf16_on_cpu_keeps_trainables_in_fp32(train_workspace):
    """bf16 without DeepSpeed: frozen weights in bf16, trained ones in fp32 under autocast (fp16 pkl features)."""
    from artemis_cli.train.config import load_train_config
    from artemis_cli.train.model_setup import build_stage_model

    config = load_train_config(3, CONFIGS / "sample_stage3.yaml", ["train.precision=bf16"])
    built = build_stage_model(config, device="cpu", dtype=torch.bfloat16, upcast_trainable=True)
    dtypes = {n: p.dtype for n, p in built.model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n in built.trainable)
    assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    done = result_json(train_cli(3, "--set", "train.precision=bf16", "--set", "train.max_steps=2",
                                 "-o", "artemis-sample/runs/bf16"))
    assert done["global_step"] == 2 and done["last_loss"] == done["last_loss"]  # finite, not NaN


@pytest.mark.slow
def test_compiled_roi_module_trains_to_the_same_losses_and_files(train_workspace):
    """`train.compile_roi`: the same losses as eager (fused kernels round a little differently) and the
    same saved names (no `_orig_mod.` prefixes)."""
    def run(name: str, *overrides: str) -> tuple[list[float], dict]:
        done = result_json(train_cli(3, "--set", "train.max_steps=3", "--set", "train.save_steps=100",
                                     *overrides, "-o", f"artemis-sample/runs/{name}"))
        assert done["global_step"] == 3
        folder = train_workspace / "artemis-sample/runs" / name
        state = json.loads((folder / "trainer_state.json").read_text())
        losses = [e["loss"] for e in state["log_history"] if "loss" in e and "step" in e]
        return losses, load_bin(folder / "non_lora_trainables.bin")

    from torch._dynamo.utils import counters

    eager_losses, eager_state = run("eager")
    counters.clear()
    compiled_losses, compiled_state = run("compiled", "--set", "train.compile_roi=true")
    assert counters["stats"]["unique_graphs"] >= 1 and counters["aot_autograd"]["total"] >= 1  # really compiled
    assert json.loads((train_workspace / "artemis-sample/runs/compiled/manifest.json").read_text())["status"] == "finished"
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-3)
    assert sorted(compiled_state) == sorted(eager_state)
    for name, value in eager_state.items():
        # Adam turns a rounding difference in a near-zero gradient into up to a whole step (lr 1e-3) on that
        # element: allow half a step per element, and require the tensors to agree closely on average.
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-3, atol=5e-4)
        assert (compiled_state[name].float() - value.float()).abs().mean().item() < 1e-5, name


def test_a_failed_roi_compile_is_one_clear_error():
    from torch._dynamo.exc import BackendCompilerFailed

    from artemis_cli.errors import UsageError
    from artemis_cli.train.run import _train_compiled

    class Trainer:
        def train(self, resume_from_checkpoint=None):
            raise BackendCompilerFailed("inductor", RuntimeError("C++ compiler not found\nlong trace"), None)

    with pytest.raises(UsageError) as caught:
        _train_compiled(Trainer(), None, compile_roi=True)
    assert "train.compile_roi: torch.compile of the RoI module failed" in str(caught.value)
    assert "C++ compiler not found" in str(caught.value) and "long trace" not in str(caught.value)
    assert "train.compile_roi=false" in caught.value.hint
    with pytest.raises(BackendCompilerFailed):  # not ours to explain when compile_roi is off
        _train_compiled(Trainer(), None, compile_roi=False)
