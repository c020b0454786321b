"""Quantised loading: memory, time per answer and agreement with the unquantised model (`--quantize`).

    python benchmarks/quantize.py --threads 2 --out benchmarks/results/quantize_cpu.json   # tiny, CPU: none, int8
    python benchmarks/quantize.py --device cuda --out quantize_gpu.json                  # random-init 7B: none, int8, int4, nf4

CPU: the tiny random Artemis (the test suite's model: Llama hidden 64, the tiny CLIP tower, RoI module with `--roi-fuse` rounds)
is saved as a checkpoint and loaded once per mode through `load_model(..., quantize=MODE)`, as every
command loads it. CUDA (unless `--tiny`): a random-init Artemis of the published shape (Vicuna-7B LLM,
CLIP ViT-L/14 tower, RoI module, built on the GPU from `benchmarks/infer.py`, nothing downloaded),
quantised in memory with `quantize_llm` (the function `load_model` calls). Modes the machine cannot run
(int4 on CPU, nf4 without CUDA or bitsandbytes) are reported with the reason.

Per mode, on the same VideoRefBench-style records (clip feature + 9 RoI frames each; inputs built by
`referring_inputs` as `infer` builds them):
- memory: bytes of the parameters by part (LLM, tower, RoI module, projector) and, on CUDA, the GPU
  memory allocated once the model is loaded;
- seconds per answer: one record at a time (median), and the batched rate (all records in one batch);
- agreement with `none`: the share of records whose greedy answer (token ids) is identical, and the
  largest absolute difference of the first generated token's logits (with the largest |logit| of
  `none` for scale).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from artemis_cli.data.records import ReferringRecord  # noqa: E402
from artemis_cli.errors import UsageError  # noqa: E402
from artemis_cli.model.generation import (DecodingSettings, GenerationRequest, embed_requests,  # noqa: E402
                                          generate_tokens)
from artemis_cli.model.inputs import referring_inputs  # noqa: E402
from artemis_cli.model.quantize import model_memory, quantize_llm  # noqa: E402

from infer import build_7b, build_tiny, make_records, sync  # noqa: E402


def requests_for(loaded, annotations: Path, count: int) -> list[GenerationRequest]:
    root = annotations.parent / "Artemis_data"
    mm = loaded.model.mm
    requests = []
    for index, raw in enumerate(json.loads(annotations.read_text())[:count]):
        record = ReferringRecord.model_validate(raw)
        inputs = referring_inputs(record, clip=root / record.clip_path, frame_dir=root / record.frame_path,
                                  tokenizer=loaded.tokenizer, image_processor=loaded.image_processor,
                                  rng=random.Random(index), train=False, num_boxes=mm.tracked_roi_tokens(8),
                                  feature_width=mm.mm_hidden_size)
        device, dtype = loaded.model.device, loaded.model.dtype
        requests.append(GenerationRequest(input_ids=inputs.input_ids, media=[m.to(device) for m in inputs.media],
                                          seed=index, roi_seed=inputs.roi_seed,
                                          roi_frames=inputs.roi_frames.to(device, dtype),
                                          roi_boxes=inputs.roi_boxes.to(device)))
    return requests


def first_logits(model, tokenizer, requests: list[GenerationRequest]) -> torch.Tensor:
    """Logits of the first generated token of each request, one request at a time: [N, V] float32."""
    rows = []
    with torch.inference_mode():
        for request in requests:
            spliced = embed_requests(model, [request], tokenizer.pad_token_id or 0)
            out = model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask)
            rows.append(out.logits[0, -1].float().cpu())
    return torch.stack(rows)


def run_mode(mode: str, load, requests_of, decoding: DecodingSettings, device: str) -> dict:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        loaded = load(mode)
    except UsageError as exc:
        return {"mode": mode, "error": exc.message}
    model, tokenizer = loaded.model, loaded.tokenizer
    sync(device)
    allocated = torch.cuda.memory_allocated() / 2**30 if device.startswith("cuda") else None
    requests = requests_of(loaded)
    tokens = generate_tokens(model, tokenizer, requests[:1], decoding)  # warm-up
    singles, answers = [], []
    for request in requests:
        sync(device)
        start = time.perf_counter()
        answers += generate_tokens(model, tokenizer, [request], decoding)
        sync(device)
        singles.append(time.perf_counter() - start)
    sync(device)
    start = time.perf_counter()
    batched = generate_tokens(model, tokenizer, requests, decoding)
    sync(device)
    batch_s = time.perf_counter() - start
    logits = first_logits(model, tokenizer, requests)
    memory = {part: round(size / 2**20, 3) for part, size in model_memory(model).items()}
    result = {"mode": mode, "memory_mib": memory, "cuda_allocated_gib": allocated,
              "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
              "s_per_answer_single_median": statistics.median(singles), "batched_answers_per_s": len(requests) / batch_s,
              "mean_new_tokens": sum(len(t) for t in answers) / len(answers),
              "batched_equals_single": batched == answers, "_answers": answers, "_logits": logits}
    del loaded, model, tokens
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny model even on CUDA (default on CPU)")
    parser.add_argument("--modes", default=None, help="comma list (default: none,int8 on CPU; none,int8,int4,nf4 on CUDA)")
    parser.add_argument("--records", type=int, default=None, help="records answered per mode (default 32 CPU, 16 CUDA)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--roi-fuse", type=int, default=1, help="tiny model's RoI fuse rounds (tests: 1; published: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    tiny = args.tiny or not device.startswith("cuda")
    modes = (args.modes or ("none,int8" if not device.startswith("cuda") else "none,int8,int4,nf4")).split(",")
    if modes[0] != "none":
        modes.insert(0, "none")
    count = args.records or (32 if tiny else 16)
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if tiny:
            from artemis_cli.model.loading import load_model, save_model

            built = build_tiny(tmp / "parts", roi_fuse=args.roi_fuse)
            checkpoint = save_model(built.model, built.tokenizer, tmp / "tiny_artemis")
            width = built.model.mm.mm_hidden_size
            del built

            def load(mode):
                return load_model(checkpoint, device=device, dtype="float32", quantize=mode)
        else:
            width = 1024

            def load(mode):
                from artemis_cli.model.quantize import check_quantize

                check_quantize(mode, device)  # before the 14 GB build
                dtype = torch.bfloat16 if mode == "int4" else torch.float16
                loaded = build_7b(device, dtype)
                quantize_llm(loaded.model, mode)
                return loaded
        annotations = make_records(tmp / "data", count, width)
        results = [run_mode(mode, load, lambda loaded: requests_for(loaded, annotations, count), decoding, device)
                   for mode in modes]

    reference = results[0]
    reference_answers, reference_logits = reference["_answers"], reference["_logits"]
    reference["max_abs_logit"] = reference_logits.abs().max().item()
    for result in results:
        if "error" in result:
            continue
        answers, logits = result.pop("_answers"), result.pop("_logits")
        result["identical_greedy_answers"] = sum(a == b for a, b in zip(answers, reference_answers)) / len(answers)
        result["max_logit_diff"] = (logits - reference_logits).abs().max().item()

    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor(),
               "device": device, "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
               "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
               "model": f"tiny random Artemis (RoI fuse {args.roi_fuse})" if tiny else "random-init 7B Artemis",
               "records": count, "max_new_tokens": args.max_new_tokens, "torch": torch.__version__,
               "results": results}
    for result in results:
        if "error" in result:
            print(f"{result['mode']:>5}: refused: {result['error']}")
            continue
        m = result["memory_mib"]
        print(f"{result['mode']:>5}: LLM {m['llm']:.2f} MiB, total {m['total']:.2f} MiB"
              + (f", CUDA {result['cuda_allocated_gib']:.2f} GiB" if result["cuda_allocated_gib"] is not None else "")
              + f"; {result['s_per_answer_single_median']:.3f} s/answer alone, "
                f"{result['batched_answers_per_s']:.2f} answers/s batched; identical greedy "
                f"{result['identical_greedy_answers']:.0%}, max logit diff {result['max_logit_diff']:.4g}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
