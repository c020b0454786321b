"""GPU figures for the Artemis model: the RoI module at the real shape, and a 7B forward+backward.

    python benchmarks/model_gpu.py --device cuda --out model_gpu.json   # real shapes, random init
    python benchmarks/model_gpu.py --device cpu                         # tiny shapes, a smoke run
    python benchmarks/model_gpu.py --device cuda --roi eager,compiled --skip-llm  # torch.compile'd RoI too

Real shapes (`--device cuda`, unless `--tiny`): the RoI module with CLIP-L width 1024, LLM width 4096,
5 fuse rounds, on 9 frames x batch 1 and 9 frames x batch 6, in fp16 and bf16 (forward, and
forward+backward as in training); then a random-init Vicuna-7B-shaped Artemis (CLIP-L tower from the
built-in config, nothing downloaded) with LoRA r=16 on the Llama projections and the RoI module and
projector trainable (the stage-3 recipe), one sample with a 356-token video feature and 9 frames ->
5 RoI tokens: forward, backward, peak memory. Tiny shapes (CPU default) run the same code small.
Prints a table and, with `--out`, writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX, build_config  # noqa: E402
from artemis_cli.model.roi import MultiLevelRoIModule  # noqa: E402

REAL = dict(width=1024, hidden=4096, query=1024, layers=32, heads=32, inter=11008, vocab=32000, video_tokens=356)
TINY = dict(width=64, hidden=64, query=128, layers=2, heads=4, inter=128, vocab=320, video_tokens=356)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> dict:
    """Median/min seconds over `reps` runs after one warm-up, and the peak CUDA memory (GiB)."""
    fn()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": reps, "peak_gib": peak}


def roi_case(shape: dict, batch: int, dtype: torch.dtype, device: str, reps: int, train: bool,
             compiled: bool = False) -> dict:
    torch.manual_seed(0)
    module = MultiLevelRoIModule(shape["width"], shape["hidden"], num_fuse=5, query_size=shape["query"]).to(device, dtype)
    if compiled:
        module.compile()  # as `train.compile_roi`; it compiles in `timed`'s warm-up run
    frames = 9 * batch
    levels = [torch.randn(frames, 256, shape["width"], device=device, dtype=dtype) for _ in range(4)]
    corner = torch.rand(frames, 2, device=device) * 0.5
    boxes = torch.cat([corner, corner + 0.3], dim=1)

    def forward():
        with torch.no_grad():
            module(levels, boxes)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        module(levels, boxes).float().sum().backward()

    try:
        result = timed(forward_backward if train else forward, device, reps)
    except torch.cuda.OutOfMemoryError:
        result = {"error": "CUDA out of memory"}
    del module, levels
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"case": f"roi {'fwd+bwd' if train else 'fwd'} 9x{batch} {str(dtype).replace('torch.', '')}"
                    f"{' compiled' if compiled else ''}", **result}


def random_artemis(shape: dict, dtype: torch.dtype, device: str, *, real: bool, tower_layers: int = 12, **mm):
    """A random-init Artemis of `shape` in `dtype` on `device`: real = Vicuna-7B-shaped LLM with the CLIP-L
    tower from the built-in config (nothing downloaded); else a tiny CLIP. `mm` overrides mm_* settings."""
    from transformers import LlamaConfig

    from artemis_cli.model.llava import ArtemisForCausalLM

    llama = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["inter"],
                        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                        num_key_value_heads=shape["heads"], max_position_embeddings=4096, rms_norm_eps=1e-5,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if real:
        tower, vision = "openai/clip-vit-large-patch14", None
    else:
        from artemis_cli.model.tiny import tiny_clip_vision_config

        tower, vision = "tiny-clip", tiny_clip_vision_config(shape["width"], tower_layers)
    config = build_config(llama, image_tower=tower, mm_hidden_size=shape["width"], roi_query_size=shape["query"],
                          tokenizer_model_max_length=3072, **mm)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return ArtemisForCausalLM(config, vision)
    finally:
        torch.set_default_dtype(previous)


def llm_case(shape: dict, dtype: torch.dtype, device: str, reps: int, grad_ckpt: bool) -> list[dict]:
    from peft import LoraConfig, get_peft_model

    from artemis_cli.model.llava import LORA_TARGET_MODULES

    start = time.perf_counter()
    model = random_artemis(shape, dtype, device, real=shape is REAL)
    build_s = time.perf_counter() - start
    tower_module = model.model.image_tower
    del model.model.image_tower
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=LORA_TARGET_MODULES,
                                             task_type="CAUSAL_LM"))
    base = model.base_model.model
    base.model.image_tower = tower_module
    for name in ("spi_model", "mm_projector"):
        getattr(base.model, name).requires_grad_(True)
    if grad_ckpt:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    generator = torch.Generator().manual_seed(1)
    words = lambda n: torch.randint(3, shape["vocab"], (n,), generator=generator).tolist()  # noqa: E731
    ids = [1] + words(40) + [IMAGE_TOKEN_INDEX] + words(12) + [BOX_TOKEN_INDEX] + words(14) + [BOX_TOKEN_INDEX] * 4
    answer = words(40) + [2]
    input_ids = torch.tensor([ids + answer], device=device)
    labels = torch.tensor([[IGNORE_INDEX] * len(ids) + answer], device=device)
    media = [[torch.randn(shape["video_tokens"], shape["width"], device=device, dtype=dtype)]]
    frames = torch.randn(1, 9, 3, 224, 224, device=device, dtype=dtype)
    corner = torch.rand(1, 9, 2, device=device) * 0.5
    boxes = torch.cat([corner, corner + 0.3], dim=2)
    state = {}

    def forward():
        model.zero_grad(set_to_none=True)
        state["loss"] = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels, media=media,
                              roi_frames=frames, roi_boxes=boxes, roi_seeds=[0]).loss

    def forward_backward():
        forward()
        state["loss"].backward()

    rows = []
    for label, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
        try:
            result = timed(fn, device, reps)
        except torch.cuda.OutOfMemoryError:
            result = {"error": "CUDA out of memory"}
        rows.append({"case": f"{'7B' if shape is REAL else 'tiny'} LLM {label} 1 sample, 5 RoIs, "
                             f"{str(dtype).replace('torch.', '')}{' +ckpt' if grad_ckpt else ''}",
                     **result, "loss": state["loss"].item() if "loss" in state else None,
                     "tokens": int(input_ids.shape[1]) - 6 + shape["video_tokens"] + 5,
                     "trainable": trainable, "build_s": build_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes even on CUDA (default on CPU)")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per case (default: 5 on CUDA, 1 on CPU)")
    parser.add_argument("--skip-llm", action="store_true", help="only the RoI module")
    parser.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in the 7B case")
    parser.add_argument("--llm-dtype", default=None, choices=["bfloat16", "float16", "float32"],
                        help="dtype of the 7B case (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--dtypes", default=None,
                        help="RoI-module dtypes, comma-separated (default: float16,bfloat16 on CUDA; float32 on CPU, "
                             "where half-precision convolutions are very slow)")
    parser.add_argument("--batches", default=None, help="RoI-module batches of 9 frames (default: 1,6 on CUDA; 1 on CPU)")
    parser.add_argument("--roi", default="eager", help="RoI-module variants, comma-separated: eager, compiled")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    shape = TINY if (args.tiny or not cuda) else REAL
    reps = args.reps or (5 if cuda else 1)
    dtypes = [getattr(torch, name) for name in (args.dtypes or ("float16,bfloat16" if cuda else "float32")).split(",")]
    batches = [int(b) for b in (args.batches or ("1,6" if cuda else "1")).split(",")]
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    rows = []
    for dtype in dtypes:
        for batch in batches:
            for variant in args.roi.split(","):
                for train in (False, True):
                    rows.append(roi_case(shape, batch, dtype, args.device, reps, train, compiled=variant == "compiled"))
                    print(json.dumps(rows[-1]), flush=True)
    if not args.skip_llm:
        llm_dtype = getattr(torch, args.llm_dtype or ("bfloat16" if cuda else "float32"))
        for row in llm_case(shape, llm_dtype, args.device, max(1, reps - 2), args.grad_ckpt):
            rows.append(row)
            print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    report = {"device": device_name, "shapes": "real" if shape is REAL else "tiny", "torch": torch.__version__,
              "results": rows}
    print(f"\n{device_name} ({report['shapes']} shapes, torch {torch.__version__})")
    print(f"{'case':58s} {'median ms':>10s} {'min ms':>9s} {'peak GiB':>9s}")
    for row in rows:
        if "error" in row:
            print(f"{row['case']:58s} {row['error']}")
            continue
        peak = f"{row['peak_gib']:.1f}" if row.get("peak_gib") is not None else "-"
        print(f"{row['case']:58s} {row['median_s'] * 1e3:10.1f} {row['min_s'] * 1e3:9.1f} {peak:>9s}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
