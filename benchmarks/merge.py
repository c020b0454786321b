"""`merge-lora` memory: the shard-by-shard merge against peft's whole-model merge (issue 15).

    python benchmarks/merge.py --hidden 1024 --layers 12 --runs 2

Writes, in a temporary folder, a stage-2 base in the released layout (bf16 state dicts in two
`pytorch_model-0000N-of-00002.bin` shards, `config.json` saying bfloat16) and a stage-3 LoRA run (r 16
on every Llama projection, `adapter_model.bin`, `non_lora_trainables.bin`), then merges it in a fresh
process per run with

- ``sharded``: `merge_lora(..., dtype="auto")`, what `artemis model merge-lora` runs (bf16, shard by shard);
- ``peft-fp32``: `load_model` + `save_model` in float32, what `merge-lora --dtype auto` did before on CPU;
- ``peft-bf16``: the same whole-model path in bf16,

and prints wall time, peak resident memory (VmHWM) and the peak of anonymous memory above what the
imports take (RssAnon sampled every 20 ms; memory-mapped shard pages are file-backed and can be dropped,
anonymous memory must fit in RAM) of each, plus the size of the weights written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def prepare(root: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from artemis_cli.model.llava import ArtemisForCausalLM
    from artemis_cli.model.tiny import save_tiny_clip, save_tiny_tokenizer, tiny_artemis_config

    from transformers import AutoTokenizer

    clip = save_tiny_clip(root / "clip")
    tokenizer_dir = save_tiny_tokenizer(root / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = tiny_artemis_config(len(tokenizer), clip, hidden=hidden, layers=layers)
    torch.manual_seed(0)
    model = ArtemisForCausalLM(config)
    del model.model.image_tower
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if not k.startswith("model.spi_model.")}
    base = root / "base"
    base.mkdir()
    names = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for file, keys in shards.items():
        torch.save({k: state[k] for k in keys}, base / file)
    (base / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    data = config.to_dict()
    data.pop("dtype", None)
    (base / "config.json").write_text(json.dumps({**data, "torch_dtype": "bfloat16", "mm_spi_model": False,
                                                  "k_means": False}))
    tokenizer.save_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"))
    run = root / "run"
    run.mkdir()
    adapter = get_peft_model_state_dict(peft_model)
    torch.save({k: (torch.randn_like(v) * 0.01).half() for k, v in adapter.items()}, run / "adapter_model.bin")
    (run / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16, "lora_alpha": 16,
                                                         "target_modules": targets, "bias": "none",
                                                         "task_type": "CAUSAL_LM", "fan_in_fan_out": False}))
    torch.save({n: p.detach().half() for n, p in peft_model.named_parameters()
                if ".spi_model." in n or ".mm_projector." in n}, run / "non_lora_trainables.bin")
    (run / "config.json").write_text(json.dumps({**data, "torch_dtype": "bfloat16"}))
    return base, run


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def merge_once(mode: str, base: str, run: str, out: str) -> None:
    import threading

    from artemis_cli.model.loading import load_model, merge_lora, save_model

    peak_anon = [_status_kib("RssAnon")]
    stop = threading.Event()

    def sample() -> None:  # anonymous memory is what must fit in RAM; mmap'd file pages can be dropped
        while not stop.wait(0.02):
            peak_anon[0] = max(peak_anon[0], _status_kib("RssAnon"))

    baseline = _status_kib("RssAnon")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    if mode == "sharded":
        merge_lora(run, base, out, dtype="auto", max_shard_size="100MB")
    else:
        loaded = load_model(run, base, device="cpu", dtype="float32" if mode == "peft-fp32" else "bfloat16",
                            load_tower=False)
        save_model(loaded.model, loaded.tokenizer, out, max_shard_size="100MB")
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    # VmHWM is this process's own high-water mark (ru_maxrss would carry over the forking parent's peak)
    print(json.dumps({"mode": mode, "wall_s": round(wall, 2), "peak_mib": round(_status_kib("VmHWM") / 1024),
                      "anon_above_imports_mib": round((peak_anon[0] - baseline) / 1024)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--once", nargs=4, metavar=("MODE", "BASE", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        merge_once(*args.once)
        return
    with tempfile.TemporaryDirectory(prefix="artemis-merge-bench-") as tmp:
        root = Path(tmp)
        base, run = prepare(root, args.hidden, args.layers)
        size = sum(f.stat().st_size for f in base.glob("*.bin"))
        print(f"base: {size / 2**20:.0f} MiB of bf16 .bin shards (hidden {args.hidden}, {args.layers} layers)")
        results: dict[str, list[dict]] = {}
        for index in range(args.runs):
            for mode in ("sharded", "peft-fp32", "peft-bf16"):
                out = root / f"out-{mode}-{index}"
                done = subprocess.run([sys.executable, __file__, "--once", mode, str(base), str(run), str(out)],
                                      capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
                if done.returncode != 0:
                    sys.exit(done.stderr)
                results.setdefault(mode, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
        for mode, rows in results.items():
            written = sum(f.stat().st_size for f in (root / f"out-{mode}-0").glob("*.safetensors")) / 2**20
            print(f"{mode:10s} wall {statistics.median(r['wall_s'] for r in rows):6.2f} s  peak RSS "
                  f"{statistics.median(r['peak_mib'] for r in rows):6.0f} MiB  peak anonymous above the imports "
                  f"{statistics.median(r['anon_above_imports_mib'] for r in rows):6.0f} MiB  written {written:.0f} MiB")


if __name__ == "__main__":
    main()
