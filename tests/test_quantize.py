"""`--quantize`: int8 (torchao) on the tiny Artemis quantises only the LLM, answers within the agreement
measured in benchmarks/RESULTS.md, and is recorded by `infer`; modes the machine cannot run are refused
before loading; int4 / nf4 run on a GPU (gpu-marked)."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import UsageError
from artemis_cli.model.quantize import check_quantize, llm_linear_names, model_memory, quantize_llm

MAX_NEW = 8
# benchmarks/quantize.py on the tiny model (2026-12-01, CPU, 16 records x 16 tokens): 75% identical greedy
# answers, first-token logits within 0.0036 (|logit| up to 0.45). A random tiny model's logits are nearly
# tied, so one flipped token changes the rest of an answer; the bounds leave room for 4 other records.
MIN_IDENTICAL = 0.5
MAX_LOGIT_DIFF = 0.05


def bench_records(sample):
    path = sample.annotations / "videorefbench" / "hc_stvg_val.json"
    return json.loads(path.read_text()), sample.data_root / "Artemis_data"


def requests_for(loaded, records, root):
    from artemis_cli.data.records import ReferringRecord
    from artemis_cli.model.generation import GenerationRequest
    from artemis_cli.model.inputs import referring_inputs

    mm = loaded.model.mm
    out = []
    for index, raw in enumerate(records):
        record = ReferringRecord.model_validate(raw)
        inputs = referring_inputs(record, clip=root / record.clip_path, frame_dir=root / record.frame_path,
                                  tokenizer=loaded.tokenizer, image_processor=loaded.image_processor,
                                  rng=random.Random(index), train=False, num_boxes=mm.tracked_roi_tokens(8),
                                  feature_width=mm.mm_hidden_size)
        out.append(GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=index,
                                     roi_seed=inputs.roi_seed, roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes))
    return out


def first_logits(loaded, requests):
    from artemis_cli.model.generation import embed_requests

    with torch.inference_mode():
        spliced = embed_requests(loaded.model, requests, 0)
        return loaded.model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask).logits[:, -1]


def test_modes_this_machine_cannot_run_are_refused_with_the_fix():
    with pytest.raises(UsageError, match="int4 needs a CUDA GPU") as info:
        check_quantize("int4", "cpu")
    assert "--quantize int8" in info.value.hint
    with pytest.raises(UsageError, match="nf4 needs a CUDA GPU"):
        check_quantize("nf4", "cpu")
    with pytest.raises(UsageError, match="expected one of none, int8, int4, nf4"):
        check_quantize("int3", "cpu")
    check_quantize("int8", "cpu")
    check_quantize("none", "cpu")


def test_int8_quantises_the_llm_linears_only(tiny_artemis):
    model = copy.deepcopy(tiny_artemis[0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    memory_before = model_memory(model)
    names = llm_linear_names(model)
    assert "lm_head" in names and all(n.startswith("model.layers.") for n in names if n != "lm_head")
    assert len(names) == 2 * 7 + 1  # 2 decoder layers x (q, k, v, o, gate, up, down) + lm_head
    report = quantize_llm(model, "int8")
    assert report.quantized == len(names) and report.skipped == []
    for name, param in model.named_parameters():
        module = name.rsplit(".", 1)[0]
        if module in names and name.endswith(".weight"):
            assert type(param.data).__name__ == "Int8Tensor", name
        else:  # tower, RoI module, projector, embeddings, norms: untouched, in their dtype
            assert type(param.data) is torch.Tensor and param.dtype == torch.float32, name
            assert torch.equal(param.detach(), before[name]), name
    after = model_memory(model)
    linear_bytes = sum(before[f"{n}.weight"].numel() * 4 for n in names)
    assert memory_before["llm"] - after["llm"] > 0.7 * linear_bytes  # fp32 -> int8 (+ per-row scales)
    assert {k: after[k] for k in ("tower", "roi", "projector")} == \
        {k: memory_before[k] for k in ("tower", "roi", "projector")}


@pytest.mark.slow
def test_int8_loading_answers_within_the_measured_agreement(tiny_artemis_dir, sample):
    from artemis_cli.model.generation import DecodingSettings, generate_tokens
    from artemis_cli.model.loading import load_model

    records, root = bench_records(sample)
    records = records[:4]
    torch.manual_seed(0)
    plain = load_model(tiny_artemis_dir, device="cpu")
    quantized = load_model(tiny_artemis_dir, device="cpu", quantize="int8")
    assert quantized.quantize == "int8" and type(quantized.model.lm_head.weight.data).__name__ == "Int8Tensor"
    assert quantized.model.get_image_tower().vision_tower.dtype == torch.float32
    decoding = DecodingSettings(max_new_tokens=MAX_NEW)
    answers = {}
    logits = {}
    for name, loaded in (("none", plain), ("int8", quantized)):
        requests = requests_for(loaded, records, root)
        answers[name] = generate_tokens(loaded.model, loaded.tokenizer, requests, decoding)
        logits[name] = first_logits(loaded, requests)
    identical = sum(a == b for a, b in zip(answers["none"], answers["int8"])) / len(records)
    difference = (logits["none"] - logits["int8"]).abs().max().item()
    assert identical >= MIN_IDENTICAL, (answers, identical)
    assert 0 < difference < MAX_LOGIT_DIFF  # quantised (not a no-op), and close


@pytest.mark.slow
def test_infer_quantize_is_checked_before_loading_and_recorded(tiny_artemis_dir, sample, tmp_path):
    records, _ = bench_records(sample)
    one = tmp_path / "one.json"
    one.write_text(json.dumps(records[:1]))
    out = tmp_path / "preds.jsonl"
    base = ["infer", "videorefbench", "--model", str(tiny_artemis_dir), "--annotations", str(one), "--data-root",
            str(sample.data_root), "-o", str(out), "--device", "cpu", "--max-new-tokens", "4"]
    runner = CliRunner()
    result = runner.invoke(app, base + ["--quantize", "int4"])
    assert result.exit_code == 2 and "int4 needs a CUDA GPU" in result.output, result.output
    assert not out.exists()
    result = runner.invoke(app, base + ["--quantize", "int3"])
    assert result.exit_code == 2 and "quantize" in result.output
    result = runner.invoke(app, base + ["--quantize", "int8"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_name("preds.manifest.json").read_text())
    assert manifest["settings"]["quantize"] == "int8"
    result = runner.invoke(app, base)  # the unquantised model must not resume into int8 answers
    assert result.exit_code == 2 and "quantize" in result.output, result.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["int8", "int4", "nf4"])
def test_gpu_modes_quantise_the_llm_and_stay_close(tiny_artemis_dir, sample, mode):
    from artemis_cli.model.loading import load_model

    if mode == "nf4":
        pytest.importorskip("bitsandbytes")
    records, root = bench_records(sample)
    dtype = torch.bfloat16 if mode == "int4" else torch.float16  # what `auto` gives each mode on CUDA
    plain = load_model(tiny_artemis_dir, device="cuda", dtype=dtype)
    quantized = load_model(tiny_artemis_dir, device="cuda", quantize=mode)
    assert quantized.model.dtype == dtype
    assert quantized.quantize == mode
    assert model_memory(quantized.model)["llm"] < model_memory(plain.model)["llm"]
    assert model_memory(quantized.model)["tower"] == model_memory(plain.model)["tower"]
    requests = requests_for(plain, records[:4], root)
    cuda = [type(r)(input_ids=r.input_ids, media=[m.cuda() for m in r.media], seed=r.seed, roi_seed=r.roi_seed,
                    roi_frames=r.roi_frames.cuda().to(dtype), roi_boxes=r.roi_boxes.cuda()) for r in requests]
    difference = (first_logits(plain, cuda).float() - first_logits(quantized, cuda).float()).abs().max().item()
    assert difference < 0.25, difference
