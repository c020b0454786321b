"""Stage-3 training throughput: a random-init Artemis-7B (real shapes) through the real training code.

    python benchmarks/train_gpu.py --device cuda --out train_gpu.json   # 7B, bf16 + fp16, plain + ZeRO-2
    python benchmarks/train_gpu.py --device cpu                         # tiny shapes, a smoke run
    python benchmarks/train_gpu.py --device cuda --compile-roi          # the RoI module torch.compile'd

Real shapes (`--device cuda`, unless `--tiny`): Vicuna-7B-shaped LLM, CLIP ViT-L/14 tower from the
built-in config (nothing downloaded), the published RoI module (4 levels, 5 fuse rounds) and
projector; the stage-3 recipe as `artemis train stage3` sets it up (`apply_stage_training`: LoRA r 16
on the Llama projections, RoI module + projector trained, tower frozen; gradient checkpointing on the
LLM), batch 6 of synthetic samples shaped like VideoRef45K ones (a [356, 1024] clip feature, 9 RoI
frames, 5 box tokens, ~110 text tokens), trained by `ArtemisTrainer` with the `Collator` for a few
steps, without DeepSpeed (mixed precision, fp32 trainables) and with ZeRO-2 (the shipped zero2.json).

Reported per (dtype, mode): median step time after warm-up, LLM tokens per step (text + video +
RoI tokens after splicing) and tokens/s, model FLOPs per step (counted by `FlopCounterMode` on a
one-sample forward+backward without checkpointing, times the batch: the work the step needs, not
the recomputation), MFU against the GPU's dense bf16/fp16 peak (H100 SXM / H200: 989 TFLOP/s;
`--peak-tflops` for others) and peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # model_gpu.random_artemis

from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX  # noqa: E402
from artemis_cli.model.inputs import ModelInputs  # noqa: E402

REAL = dict(width=1024, hidden=4096, query=1024, layers=32, heads=32, inter=11008, vocab=32000, levels=4, fuse=5,
            tower_layers=24)
TINY = dict(width=64, hidden=64, query=128, layers=2, heads=4, inter=128, vocab=320, levels=2, fuse=1,
            tower_layers=12)
PEAKS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0}
PROMPT_WORDS, ANSWER_WORDS = 60, 50


def peak_tflops(name: str) -> float | None:
    for key in sorted(PEAKS, key=len, reverse=True):
        if all(part in name for part in key.split()):
            return PEAKS[key]
    return None


def build_model(shape: dict, dtype: torch.dtype, device: str):
    """A random-init stage-3 Artemis (RoI module, k-means) in `dtype` on `device`."""
    from model_gpu import random_artemis

    model = random_artemis(shape, dtype, device, real=shape is REAL, tower_layers=shape["tower_layers"],
                           num_levels=shape["levels"], num_level_spi_features=shape["levels"], roi_num_fuse=shape["fuse"])
    model.config.use_cache = False
    return model


class SyntheticReferring(torch.utils.data.Dataset):
    """`distinct` stage-3-shaped samples, cycled; keys may be ``(index, epoch)`` as the sampler yields."""

    def __init__(self, shape: dict, length: int, distinct: int):
        generator = torch.Generator().manual_seed(1)
        self.length = length
        self.samples = []
        for n in range(distinct):
            words = lambda k: torch.randint(3, shape["vocab"], (k,), generator=generator).tolist()  # noqa: E731
            prompt = ([1] + words(PROMPT_WORDS - 30) + [IMAGE_TOKEN_INDEX] + words(14) + [BOX_TOKEN_INDEX] + words(16)
                      + [BOX_TOKEN_INDEX] * 4 + words(1))
            answer = words(ANSWER_WORDS) + [2]
            corner = torch.rand(9, 2, generator=generator) * 0.5
            self.samples.append(ModelInputs(
                ref=f"synthetic[{n}]", input_ids=prompt + answer, labels=[IGNORE_INDEX] * len(prompt) + answer,
                media=[torch.randn(356, shape["width"], generator=generator)],  # as `load_video_feature` gives
                roi_frames=torch.randn(9, 3, 224, 224, generator=generator),
                roi_boxes=torch.cat([corner, corner + 0.3], dim=1), roi_seed=n))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        return self.samples[index % len(self.samples)]


class StepTimer:
    """Times each optimizer step (device-synchronised), via the Trainer's callbacks; with `profile_step`,
    records that step under `torch.profiler` and keeps its busiest kernels/ops as a table."""

    def __init__(self, device: str, profile_step: int | None = None):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if profile_step is not None and len(timer.ends) == profile_step - 1:
                    timer.start_profile(device)

            def on_step_end(self, args, state, control, **kwargs):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                timer.ends.append(time.perf_counter())
                if timer.profiler is not None:
                    timer.stop_profile(device)

        self.ends: list[float] = []
        self.profiler = None
        self.profile_table: str | None = None
        self.callback = Callback()

    def start_profile(self, device: str) -> None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        self.profiler = profile(activities=activities)
        self.profiler.start()

    def stop_profile(self, device: str) -> None:
        self.profiler.stop()
        key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
        self.profile_table = self.profiler.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70)
        self.profiler = None

    def step_seconds(self, warmup: int) -> list[float]:
        return [b - a for a, b in zip(self.ends[warmup - 1:], self.ends[warmup:])] if warmup >= 1 else []


def count_flops(model, batch: dict, device: str, dtype: torch.dtype) -> int:
    """FLOPs (matmul, conv, attention) of one forward+backward of `batch`, no checkpointing."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = {k: v for k, v in batch.items() if k not in ("bad_records", "num_tokens")}
    inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    inputs["media"] = [[m.to(device) for m in items] for items in inputs["media"]]
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    model.train()
    with FlopCounterMode(display=False) as counter, autocast:
        model(**inputs).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_case(model, trainable, dataset, collator, args_config, device: str, deepspeed: bool, warmup: int,
               steps: int, profile: bool = False) -> dict:
    """Train `warmup + steps` steps with `ArtemisTrainer`; time, memory, losses."""
    from artemis_cli.train.launch import deepspeed_config_path, launch_environment
    from artemis_cli.train.run import reset_process_state, training_arguments
    from artemis_cli.train.trainer import ArtemisTrainer

    config = args_config.model_copy(deep=True)
    config.train.deepspeed = "zero2" if deepspeed else None
    timer = StepTimer(device, profile_step=warmup + steps + 1 if profile else None)  # one extra, untimed step
    with tempfile.TemporaryDirectory() as run_dir, launch_environment(device, deepspeed) as env:
        try:
            args = training_arguments(config, Path(run_dir), device, deepspeed_config_path(config.train.deepspeed))
            trainer = ArtemisTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                     stage=3, trainable=trainable, lengths=[1] * len(dataset), group_by="none",
                                     skip_bad=False, run_dir=Path(run_dir), callbacks=[timer.callback])
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            for callback in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(callback)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
            losses = [e["loss"] for e in trainer.state.log_history if "loss" in e and "step" in e]
            result = {"step_s": timer.step_seconds(warmup)[:steps], "losses": losses}
            if timer.profile_table:
                print(timer.profile_table, flush=True)
        except torch.cuda.OutOfMemoryError as exc:
            result = {"error": f"CUDA out of memory: {str(exc).splitlines()[0][:160]}"}
        finally:
            trainer = None
            reset_process_state(created_group="RANK" in env)
            gc.collect()
    if device.startswith("cuda"):
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
    return result


def run_dtype(shape: dict, dtype: torch.dtype, device: str, batch: int, warmup: int, steps: int, modes: list[str],
              peak: float | None, compile_roi: bool = False, profile: bool = False) -> list[dict]:
    from artemis_cli.train.collator import Collator
    from artemis_cli.train.config import load_train_config
    from artemis_cli.train.model_setup import (apply_stage_training, compile_roi_module, enable_checkpointing,
                                               inner_model, trainable_names)

    name = str(dtype).replace("torch.", "")
    precision = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[name]
    started = time.perf_counter()
    model = build_model(shape, dtype, device)
    build_s = time.perf_counter() - started
    dataset = SyntheticReferring(shape, length=batch * (warmup + steps + profile), distinct=batch)
    collator = Collator(pad_token_id=0, max_length=2048, image_tokens=256)
    one = collator([dataset[0]])
    tokens_per_step = collator([dataset[i] for i in range(batch)])["num_tokens"]
    model = apply_stage_training(model, 3, upcast_trainable=dtype != torch.float32)  # fp32 trainables for AMP
    flops = count_flops(model, one, device, dtype) * batch
    enable_checkpointing(inner_model(model))
    if compile_roi:  # as `train.compile_roi` does; after counting, so the count is of the eager module
        compile_roi_module(model)
    rows = []
    for mode in modes:  # DeepSpeed casts the whole model to half precision: keep it last
        deepspeed = mode == "zero2"
        trainable = trainable_names(model)
        config = load_train_config(3, None, ["model.path=synthetic", "data.root=/synthetic", "data.annotations=[x]",
                                             "train.output_dir=/synthetic"], check_paths=False)
        config.train = config.train.model_copy(update=dict(
            batch_size=batch, grad_accum=1, max_steps=warmup + steps + profile, save_steps=10**6, report_to=[],
            precision=precision, device=device, logging_steps=1, scheduler="constant"))
        config.data = config.data.model_copy(update=dict(num_workers=2 if device.startswith("cuda") else 0))
        result = train_case(model, trainable, dataset, collator, config, device, deepspeed, warmup, steps, profile)
        row = {"dtype": name, "mode": mode, "compile_roi": compile_roi, "batch": batch, "tokens_per_step": tokens_per_step,
               "flops_per_step": flops, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "build_s": build_s, **result}
        if result.get("step_s"):
            step = statistics.median(result["step_s"])
            row.update(median_step_s=step, tokens_per_s=tokens_per_step / step)
            if peak:
                row["mfu"] = flops / step / (peak * 1e12)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("step_s",)}), flush=True)
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes even on CUDA (default on CPU)")
    parser.add_argument("--dtypes", default=None, help="comma-separated (default: bfloat16,float16 on CUDA; float32 on CPU)")
    parser.add_argument("--modes", default="plain,zero2", help="plain (HF mixed precision) and/or zero2 (DeepSpeed)")
    parser.add_argument("--batch", type=int, default=None, help="per-step batch (default: 6 on CUDA, 2 on CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--compile-roi", action="store_true", help="torch.compile the RoI module (train.compile_roi)")
    parser.add_argument("--profile", action="store_true",
                        help="one extra step under torch.profiler: print its 30 busiest kernels/ops")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16/fp16 peak of the GPU (TFLOP/s)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    shape = TINY if (args.tiny or not cuda) else REAL
    dtypes = [getattr(torch, n) for n in (args.dtypes or ("bfloat16,float16" if cuda else "float32")).split(",")]
    modes = sorted((m for m in args.modes.split(",") if m), key=lambda m: m == "zero2")
    batch = args.batch or (6 if cuda else 2)
    device_name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    peak = args.peak_tflops or (peak_tflops(device_name) if cuda else None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # as `artemis train` sets on CUDA
    started = time.perf_counter()
    rows = []
    for dtype in dtypes:
        rows += run_dtype(shape, dtype, args.device, batch, args.warmup, args.steps, modes, peak, args.compile_roi,
                          args.profile)
    report = {"device": device_name, "shapes": "real" if shape is REAL else "tiny", "peak_tflops": peak,
              "torch": torch.__version__, "wall_s": time.perf_counter() - started, "results": rows}
    print(f"\n{device_name} ({report['shapes']} shapes, torch {torch.__version__}, peak {peak} TFLOP/s, "
          f"{report['wall_s']:.0f} s{', RoI module compiled' if args.compile_roi else ''})")
    print(f"{'dtype':9s} {'mode':6s} {'step s':>7s} {'tok/step':>9s} {'tok/s':>8s} {'TFLOP/step':>11s} {'MFU':>6s} "
          f"{'peak GiB':>9s}")
    for row in rows:
        if "error" in row:
            print(f"{row['dtype']:9s} {row['mode']:6s} {row['error']}")
            continue
        mfu = f"{row['mfu'] * 100:.1f}%" if "mfu" in row else "-"
        peak_mem = f"{row['peak_gib']:.1f}" if row.get("peak_gib") is not None else "-"
        print(f"{row['dtype']:9s} {row['mode']:6s} {row.get('median_step_s', float('nan')):7.3f} "
              f"{row['tokens_per_step']:9d} {row.get('tokens_per_s', 0):8.0f} {row['flops_per_step'] / 1e12:11.2f} "
              f"{mfu:>6s} {peak_mem:>9s}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
