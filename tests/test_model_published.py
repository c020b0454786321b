"""The released checkpoints' layout and the published pipeline's numerics (issue 15, section 3).

A tiny checkpoint is written here in exactly the layout and key format the published training code
(transformers 4.31, peft 0.4) wrote for `ChurchillQAQ/Artemis-7b-ftune` (stage 2, the `--model-base`) and
`ChurchillQAQ/Artemis-7B-lora` (stage 3): a sharded `.bin` base written with `torch.save` of state dicts
(with the rotary buffers 4.31 still saved), `adapter_model.bin` with peft-0.4 names, `non_lora_trainables.bin`
with `base_model.model.model.spi_model.*`, `config.json` with model_type "llava" and `torch_dtype`, and no
tokenizer in the LoRA folder. It is loaded, inspected and merged here.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.model.conversation import chat_prompt, tokenize_prompt
from artemis_cli.model.loading import load_model, merge_lora, resolve_dtype

WIDTH = 64


def config_4_31(model, **changes) -> dict:
    """A config.json as transformers 4.31 wrote it for this model (`torch_dtype`, no `dtype`)."""
    config = model.config.to_dict()
    config.pop("dtype", None)
    config.update({"torch_dtype": "bfloat16", "transformers_version": "4.31.0", "model_type": "llava",
                   "architectures": ["LlavaLlamaForCausalLM"], **changes})
    return config


def write_published_checkpoints(tiny_artemis, tiny_clip_dir, root):
    """(base, run) folders in the published layout; returns them with the reference peft model."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    model, tokenizer, _ = tiny_artemis
    trained = copy.deepcopy(model)
    del trained.model.image_tower  # the published run added LoRA before the tower existed
    base_state = {k: v.detach().to(torch.bfloat16).clone() for k, v in trained.state_dict().items()
                  if not k.startswith("model.spi_model.")}
    for layer in range(trained.config.num_hidden_layers):  # buffers transformers 4.31 still saved
        base_state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    base = root / "Artemis-7b-ftune"
    base.mkdir()
    names = sorted(base_state)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for file, keys in shards.items():
        torch.save({k: base_state[k] for k in keys}, base / file)
    index = {"metadata": {"total_size": 0}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (base / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (base / "config.json").write_text(json.dumps(config_4_31(model, mm_spi_model=False, k_means=False)))
    tokenizer.save_pretrained(base)

    trained.load_state_dict({k: v.float() for k, v in base_state.items() if "rotary" not in k}, strict=False)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(trained, LoraConfig(r=4, lora_alpha=16, target_modules=targets, lora_dropout=0.05,
                                                    task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_((0.3 * torch.randn(param.shape, generator=generator)).half().float())
            elif ".spi_model." in name or ".mm_projector." in name:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
                param.copy_(param.half().float())
    run = root / "Artemis-7B-lora"
    run.mkdir()
    adapter = {k: v.half() for k, v in get_peft_model_state_dict(peft_model).items()}
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in adapter  # the peft 0.4 names
    torch.save(adapter, run / "adapter_model.bin")
    (run / "adapter_config.json").write_text(json.dumps({  # peft 0.4.0's fields
        "base_model_name_or_path": "./checkpoints/Artemis-7b-ftune", "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "lora_alpha": 16, "lora_dropout": 0.05,
        "modules_to_save": None, "peft_type": "LORA", "r": 4, "revision": None, "target_modules": targets,
        "task_type": "CAUSAL_LM"}))
    non_lora = {n: p.detach().half().clone() for n, p in peft_model.named_parameters()
                if ".spi_model." in n or ".mm_projector." in n}
    assert all(n.startswith(("base_model.model.model.spi_model.", "base_model.model.model.mm_projector.")) for n in non_lora)
    torch.save(non_lora, run / "non_lora_trainables.bin")
    (run / "config.json").write_text(json.dumps(config_4_31(model, mm_image_tower=str(tiny_clip_dir))))
    assert not any(run.glob("tokenizer*"))
    return base, run, peft_model


def probe_logits(model, tokenizer, roi_frames=None):
    ids = torch.tensor([tokenize_prompt(chat_prompt("<image>\nWhat is the <bbox> doing in this video?"), tokenizer)])
    media = [[torch.randn(356, WIDTH, generator=torch.Generator().manual_seed(0))]]
    frames = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), media=media,
                     roi_frames=[frames], roi_boxes=[boxes]).logits


@pytest.fixture(scope="module")
def published(tiny_artemis, tiny_clip_dir, tmp_path_factory):
    return write_published_checkpoints(tiny_artemis, tiny_clip_dir, tmp_path_factory.mktemp("published"))


def merged_tensors(folder) -> dict:
    from artemis_cli.model import weights as W

    return W.read_state_dict(W.weight_files(folder))


def assert_merge_within_float32_rounding(peft_model, loaded, run, base):
    """`load_model`'s fp32 merge against the unmerged peft adapter, with a tolerance measured here.

    Merged (x @ (W + s·B·A)) and unmerged (x @ W + s·(x @ A) @ B) sum in different orders, so in fp32 they
    agree only to fp32 rounding, and this network amplifies rounding: the test adapter's delta
    (0.3·randn, alpha/r = 4) is ~50x the base weights, so fp32 logits (|max| ~0.65) carry ~1e-4 of
    rounding, which moves with the CPU kernels (AVX2 vs AVX-512) and package versions. A fixed 1e-4
    between two fp32 orders measured noise, not the merge. Here the reference is the unmerged adapter in
    float64, the fp32 noise is what the unmerged fp32 model itself is off from that reference, and the
    fp32 merge must be as close as a few times that noise. A wrong merge (scale, transposed B·A, a bf16
    fold, a missing layer) is off by > 1e-2, far outside; the float64 merge must match to float64 order.
    """
    tower = loaded.model.model.image_tower
    peft_model.base_model.model.model.image_tower = tower
    unmerged32 = probe_logits(peft_model.float().eval(), loaded.tokenizer)
    merged32 = probe_logits(loaded.model, loaded.tokenizer)
    wide = load_model(run, base, device="cpu", dtype=torch.float64)
    peft_model.base_model.model.model.image_tower = wide.model.model.image_tower
    reference = probe_logits(peft_model.double(), wide.tokenizer)  # the unmerged adapter in float64
    merged64 = probe_logits(wide.model, wide.tokenizer)
    peft_model.float()
    peft_model.base_model.model.model.image_tower = tower
    with peft_model.disable_adapter():
        without_adapter = probe_logits(peft_model, loaded.tokenizer)
    adapter_effect = (without_adapter.double() - reference).abs().max().item()
    noise = (unmerged32.double() - reference).abs().max().item()
    merge_error = (merged32.double() - reference).abs().max().item()
    assert adapter_effect > 0.1 and noise < 1e-3 * adapter_effect, (adapter_effect, noise)  # a probe that can see a merge
    assert merge_error <= 3 * noise + 1e-6, f"fp32 merge off by {merge_error:.3g}; fp32 rounding here is {noise:.3g}"
    # float64 merge vs unmerged: the RMSNorms still round to fp32 inside, so equal to far below the fp32 noise
    assert (merged64 - reference).abs().max().item() <= noise / 10


@pytest.mark.slow
def test_published_layout_loads_inspects_and_merges(published, tiny_artemis, tiny_clip_dir, tmp_path):
    from artemis_cli.model.inspect import inspect_model

    base, run, peft_model = published
    report = inspect_model(run, model_base=base)
    assert report.ok and report.kind == "lora", (report.missing, report.unexpected, report.mismatched)

    loaded = load_model(run, base, device="cpu", dtype="float32")
    assert loaded.kind == "lora" and len(loaded.tokenizer) == len(tiny_artemis[1])  # the base's tokenizer
    state = loaded.model.state_dict()
    non_lora = torch.load(run / "non_lora_trainables.bin", weights_only=True)
    for name, value in non_lora.items():
        assert torch.equal(state[name.removeprefix("base_model.model.")], value.float())
    assert_merge_within_float32_rounding(peft_model, loaded, run, base)

    # merge-lora --dtype auto: the checkpoint's bfloat16, shard by shard, bit-equal to peft's merge in bf16
    result = CliRunner().invoke(app, ["model", "merge-lora", str(run), str(tmp_path / "merged"), "--base", str(base),
                                      "--image-tower", str(tiny_clip_dir), "--json"])
    assert result.exit_code == 0, result.output
    merged_dir = tmp_path / "merged"
    assert json.loads(result.stdout)["merged"] == str(merged_dir)
    merged_config = json.loads((merged_dir / "config.json").read_text())
    assert merged_config["dtype"] == "bfloat16" and merged_config["mm_image_tower"] == str(tiny_clip_dir)
    tensors = merged_tensors(merged_dir)
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    reference = load_model(run, base, device="cpu", dtype="bfloat16", load_tower=False).model.state_dict()
    assert sorted(tensors) == sorted(k for k in reference if not k.startswith("model.image_tower."))
    for name, value in tensors.items():
        assert torch.equal(value, reference[name]), name
    assert (merged_dir / "tokenizer_config.json").is_file()
    remerged = load_model(merged_dir, device="cpu", dtype="bfloat16")
    assert remerged.kind == "merged"
    assert torch.equal(probe_logits(remerged.model, remerged.tokenizer),
                       probe_logits(load_model(run, base, device="cpu", dtype="bfloat16").model, remerged.tokenizer))


@pytest.mark.slow
def test_sharded_merge_equals_peft_merge_in_float32_with_many_shards(published, tmp_path):
    base, run, _ = published
    seen = []
    out = merge_lora(run, base, tmp_path / "fp32", dtype="float32", max_shard_size="200KB",
                     progress=lambda name, index, total: seen.append((name, index, total)))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    assert [s[0] for s in seen] == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "done"]
    reference = load_model(run, base, device="cpu", dtype="float32", load_tower=False).model.state_dict()
    tensors = merged_tensors(out)
    for name, value in tensors.items():
        assert value.dtype == torch.float32 and torch.equal(value, reference[name]), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


def test_merge_refuses_a_mismatched_adapter(published, tmp_path):
    import shutil

    from artemis_cli.errors import InputError

    base, run, _ = published
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    adapter = torch.load(broken / "adapter_model.bin", weights_only=True)
    adapter["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 7)
    torch.save(adapter, broken / "adapter_model.bin")
    with pytest.raises(InputError, match=r"q_proj.weight.*does not fit the model"):
        merge_lora(broken, base, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_auto_dtype_follows_the_published_eval():
    """The released stage-3 config says bfloat16 (from stage 2); the published eval ran fp16."""
    from transformers import LlamaConfig

    config = LlamaConfig()
    config.dtype = "bfloat16"
    assert resolve_dtype("auto", "cuda", config) == torch.float16
    assert resolve_dtype("auto", "cuda:1", None) == torch.float16
    assert resolve_dtype("auto", "cpu", config) == torch.float32
    assert resolve_dtype("bfloat16", "cuda", config) == torch.bfloat16


def test_roi_frame_pixels_equal_the_published_pil_processor(tiny_clip_dir, tmp_path):
    """The PIL pipeline written out (shortest side to 224 bicubic, centre crop, rescale, normalise)
    against what `load_model`'s processor gives for RoI frames, bit for bit."""
    import numpy as np
    from PIL import Image

    from artemis_cli.model.loading import clip_image_processor_class
    from artemis_cli.model.sampling import RoiFrames, load_roi_inputs
    from artemis_cli.model.tiny import clip_image_processor

    processor = clip_image_processor_class().from_pretrained(tiny_clip_dir)
    mean = np.array(processor.image_mean, dtype=np.float32)
    std = np.array(processor.image_std, dtype=np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for index, (w, h) in enumerate([(320, 240), (240, 320), (500, 333), (224, 224)]):
        array = (np.cumsum(rng.integers(0, 40, (h, w, 3)), axis=1) % 256).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / f"{index}.png")
        frames.append((f"{index}.png", w, h))
    selection = RoiFrames(frame_ids=[f for f, _, _ in frames], boxes=[[0, 0, 10, 10]] * 4, tracked_indices=[0, 1, 2],
                          key_index=None)
    for candidate in (processor, clip_image_processor()):
        pixels, _ = load_roi_inputs(tmp_path, selection, candidate)
        for row, (name, w, h) in enumerate(frames):
            image = Image.open(tmp_path / name).convert("RGB")
            short, long = min(w, h), max(w, h)
            size = (224, int(224 * long / short)) if w <= h else (int(224 * long / short), 224)
            resized = image.resize(size, resample=Image.BICUBIC)
            left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
            crop = np.asarray(resized.crop((left, top, left + 224, top + 224)))
            expected = ((crop.astype(np.float64) * (1 / 255)).astype(np.float32) - mean) / std
            assert np.array_equal(pixels[row].numpy(), expected.transpose(2, 0, 1)), (name, type(candidate).__name__)


def test_box_division_rounds_as_the_published_code():
    from artemis_cli.model.sampling import normalise_boxes, sample_roi_frames

    def published(box, w, h):  # the published line, verbatim
        return (torch.tensor(box) / torch.tensor([w, h, w, h], dtype=torch.half)).float().tolist()

    cases = [([37, 55, 301, 250], (1280, 720)), ([1, 2, 1919, 1079], (1920, 1080)), ([3.5, 55, 301, 250], (1280, 720)),
             ([0, 0, 640, 360], (640, 360))]
    for box, (w, h) in cases:
        assert normalise_boxes([box], [(w, h)]) == [published(box, w, h)]
        exact = normalise_boxes([box], [(w, h)], exact=True)[0]
        assert exact == pytest.approx([box[0] / w, box[1] / h, box[2] / w, box[3] / h], abs=1e-12)
    rounded = normalise_boxes([[37, 55, 301, 250]], [(1280, 720)])[0]
    assert rounded != pytest.approx([37 / 1280, 55 / 720, 301 / 1280, 250 / 720], abs=1e-6)  # fp16, as published
    assert max(abs(a - b) for a, b in zip(rounded, [37 / 1280, 55 / 720, 301 / 1280, 250 / 720])) < 2.5e-4
    # the integer/float distinction survives the frame sampler (it decides fp16 vs fp32 division)
    chosen = sample_roi_frames([[1, 2, 30, 40], [1.5, 2, 30, 40]], ["a", "b"], key_frame_id="a",
                               key_frame_box=[1, 2, 30, 40])
    assert [type(v) for v in chosen.boxes[0]] == [int] * 4 and type(chosen.boxes[-1][0]) is float


def test_more_tracked_rois_than_bbox_slots_names_the_fix():
    from artemis_cli.errors import InputError
    from artemis_cli.model.splice import splice

    ids = torch.tensor([[1, -500, 5, -500, -500, 6]])  # key frame + 2 tracked <bbox>
    embeds = torch.zeros(1, 6, 8)
    with pytest.raises(InputError) as caught:
        splice(ids, embeds, None, None, [[]], [torch.zeros(9, 8)])
    assert "3 <bbox> placeholder(s) but 9 RoI token(s)" in caught.value.message
    assert "--num-tracked 2" in caught.value.hint and "k-means on" in caught.value.hint


def test_exact_boxes_option_through_inputs_train_config_and_infer(sample, tiny_artemis):
    """Default: the published rounding; `exact_boxes` (train `data.exact_boxes`, `infer videorefbench
    --exact-boxes`) divides exactly. On the sample's integer boxes the two differ by < 2.5e-4."""
    import random

    from artemis_cli.data.records import ReferringRecord
    from artemis_cli.infer.tasks import PromptOptions
    from artemis_cli.model.inputs import referring_inputs
    from artemis_cli.train.config import DataSection

    _, tokenizer, processor = tiny_artemis
    raw = json.loads((sample.annotations / "videorefbench" / "hc_stvg_val.json").read_text())[0]
    record, root = ReferringRecord.model_validate(raw), sample.data_root / "Artemis_data"
    built = {exact: referring_inputs(record, clip=root / record.clip_path, frame_dir=root / record.frame_path,
                                     tokenizer=tokenizer, image_processor=processor, rng=random.Random(0), train=False,
                                     exact_boxes=exact).roi_boxes for exact in (False, True)}
    assert torch.equal(built[False], built[False].half().float())  # fp16 values, as published
    difference = (built[False] - built[True]).abs().max().item()
    assert 0 < difference < 2.5e-4
    section = {"root": "/data/DATA_ROOT", "annotations": ["/data/annotations"]}
    assert DataSection(**section).exact_boxes is False and DataSection(**section, exact_boxes=True).exact_boxes
    assert PromptOptions().exact_boxes is False
    help_text = CliRunner().invoke(app, ["infer", "videorefbench", "--help"], terminal_width=200).output
    assert "--exact-boxes" in help_text
