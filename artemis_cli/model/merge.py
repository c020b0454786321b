"""Merge a stage-3 LoRA run into its base shard by shard: the checkpoint's dtype, bounded memory.

peft's `merge_and_unload` needs the whole model in memory, and loading the 7B in float32 on CPU takes
~27 GB. Here the base is read one shard at a time (safetensors tensor by tensor, `.bin` memory-mapped
where the format allows), each LoRA pair aimed at a weight of that shard is folded in with peft's own
arithmetic, the non-LoRA trainables (RoI module, projector) replace or join the base weights, and the
merged tensors are written as safetensors shards as soon as one is full (`max_shard_size`, 2 GB by
default; safetensors serialises a shard in memory, so about twice that is held at the peak, plus the
memory-mapped pages of the base shard being read, which the kernel can drop). The memory needed does
not grow with the model (`benchmarks/merge.py`). The result equals `load_model(run, base)` +
`save_model` bit for bit (`tests/test_model_published.py`).

peft's arithmetic (``LoraLayer.get_delta_weight`` + ``merge``, in peft 0.4 as in current peft): the LoRA
pair in fp32, ``B @ A`` (transposed when ``fan_in_fan_out``) times ``lora_alpha / r`` (``/ sqrt(r)`` with
``use_rslora``), added in place to the weight in its dtype.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from artemis_cli.common.atomic import atomic_folder
from artemis_cli.errors import InputError, UsageError
from artemis_cli.model import weights as W

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
ProgressCallback = Callable[[str, int, int], None]  # (file, index, number of files)


def read_adapter(folder: Path) -> tuple[dict, dict[str, tuple[Any, Any]]]:
    """`adapter_config.json` and the LoRA pairs by target weight name (``model.layers.0.self_attn.q_proj.weight``
    -> (A [r, in], B [out, r])). Accepts peft 0.4 names (``base_model.model.<module>.lora_A.weight``) and
    later ones with an adapter name (``.lora_A.default.weight``)."""
    from artemis_cli.common.jsonio import load_json

    config = load_json(folder / W.ADAPTER_CONFIG)
    if not isinstance(config, dict):
        raise InputError(f"{folder / W.ADAPTER_CONFIG}: expected a JSON object")
    path = next((folder / name for name in ADAPTER_FILES if (folder / name).is_file()), None)
    if path is None:
        raise InputError(f"{folder}: LoRA run without {' or '.join(ADAPTER_FILES)}")
    state = W.read_state_dict([path])
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in state.items():
        module, part = _lora_part(name)
        if module is None:
            raise InputError(f"{path}: {name} is not a LoRA weight (lora_A / lora_B)",
                             hint="merge runs that trained other adapter weights with peft's merge_and_unload")
        pairs.setdefault(module, {})[part] = tensor
    out = {}
    for module, parts in pairs.items():
        if set(parts) != {"A", "B"}:
            raise InputError(f"{path}: {module} has lora_{'A' if 'A' in parts else 'B'} but no "
                             f"lora_{'B' if 'A' in parts else 'A'}")
        out[f"{module}.weight"] = (parts["A"], parts["B"])
    return config, out


def _lora_part(name: str) -> tuple[Optional[str], Optional[str]]:
    prefix = "base_model.model."
    body = name[len(prefix):] if name.startswith(prefix) else name
    for part in ("A", "B"):
        marker = f".lora_{part}."
        if marker in body:
            module, rest = body.split(marker, 1)
            if rest == "weight" or rest.endswith(".weight"):  # "weight" (peft 0.4) or "<adapter>.weight"
                return module, part
    return None, None


def lora_scaling(config: Mapping) -> float:
    """peft's ``scaling``: lora_alpha / r, or lora_alpha / sqrt(r) with ``use_rslora``."""
    import math

    r, alpha = int(config.get("r", 8)), float(config.get("lora_alpha", 8))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def unsupported_adapter(config: Mapping) -> Optional[str]:
    """Why the streaming merge cannot fold this adapter (None when it can)."""
    if config.get("peft_type", "LORA") != "LORA":
        return f"peft_type {config.get('peft_type')!r}"
    if config.get("bias", "none") != "none":
        return f"bias {config.get('bias')!r} (trained biases)"
    if config.get("use_dora"):
        return "use_dora"
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return "per-module rank_pattern / alpha_pattern"
    if config.get("modules_to_save"):
        return "modules_to_save"
    return None


def merge_delta(weight, lora_a, lora_b, scaling: float, *, fan_in_fan_out: bool = False):
    """``weight += delta`` as peft merges: the LoRA pair in fp32 (peft 0.4 created its LoRA layers in
    fp32; later peft upcasts fp16/bf16 adapters, `autocast_adapter_dtype`), ``B @ A`` times the scaling
    in fp32, added in place to the weight in its own dtype (one rounding)."""
    import torch

    a = lora_a.to(device=weight.device, dtype=torch.float32)
    b = lora_b.to(device=weight.device, dtype=torch.float32)
    delta = b @ a
    if fan_in_fan_out:
        delta = delta.T
    merged = weight.clone()
    merged += delta * scaling
    return merged


def _base_tensors(path: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of one weight file, without holding more of it than needed."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)
        return
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
        state = W.load_bin(path)
    except Exception:  # an unsafe pickle: let load_bin give the one refusal message
        state = W.load_bin(path)
    yield from state.items()


class ShardWriter:
    """Collects tensors and writes safetensors shards of at most `max_bytes` (names as transformers')."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.written: list[tuple[Path, list[str]]] = []
        self.total = 0

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.detach().to("cpu").contiguous()
        self.pending_bytes += size
        self.total += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        path = self.folder / f".shard-{len(self.written):05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.written.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        self.flush()
        count = len(self.written)
        if count == 1:
            os.replace(self.written[0][0], self.folder / W.SAFE_SINGLE)
            return
        weight_map = {}
        for index, (path, names) in enumerate(self.written, start=1):
            final = f"model-{index:05d}-of-{count:05d}.safetensors"
            os.replace(path, self.folder / final)
            weight_map.update({name: final for name in names})
        index_data = {"metadata": {"total_size": self.total}, "weight_map": weight_map}
        (self.folder / W.SAFE_INDEX).write_text(json.dumps(index_data, indent=2))


def checkpoint_dtype(config, base: Path):
    """The dtype a run records (``dtype`` / ``torch_dtype``), else its base's, else the base weights'."""
    import torch

    from artemis_cli.model.config import read_config_json, stored_dtype

    for source in (config, read_config_json(base)):
        name = stored_dtype(source)
        if name in ("float32", "float16", "bfloat16"):
            return getattr(torch, name)
    for path in W.weight_files(base):
        for _, tensor in _base_tensors(path):
            if tensor.is_floating_point():
                return tensor.dtype
    return torch.float32


def parse_size(text: str) -> int:
    units = {"KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9}
    text = text.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-2]) * factor)
    return int(text)


def merge_lora_sharded(run_dir: Path, base: Path, out: Path, *, dtype: Any = "auto", image_tower: Optional[str] = None,
                       overwrite: bool = False, max_shard_size: str = "2GB",
                       progress: Optional[ProgressCallback] = None) -> Optional[Path]:
    """Merge shard by shard into `out` (config, safetensors shards + index, generation config, tokenizer).

    ``dtype="auto"``: the checkpoint's (`checkpoint_dtype`). Returns None when the adapter or config
    needs the in-memory path (an adapter with trained biases, DoRA, rank patterns, modules_to_save;
    extra legacy tokens that resize the embeddings); the caller falls back to peft then."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoTokenizer, GenerationConfig

    from artemis_cli.model.config import MMSettings, read_config_json
    from artemis_cli.model.llava import ArtemisForCausalLM
    from artemis_cli.common.dtypes import DTYPE_NAMES
    from artemis_cli.model.checkpoint import resolve_tower, tokenizer_folder, vision_config_for

    config = read_config_json(run_dir)
    mm = MMSettings.of(config)
    adapter_config, pairs = read_adapter(run_dir)
    if unsupported_adapter(adapter_config) or mm.mm_use_im_patch_token or mm.mm_use_im_start_end or mm.mm_use_bbox_token:
        return None
    if dtype == "auto":
        target = checkpoint_dtype(config, base)
    elif isinstance(dtype, torch.dtype):
        target = dtype
    elif dtype in DTYPE_NAMES:
        target = getattr(torch, DTYPE_NAMES[dtype])
    else:
        raise UsageError(f"--dtype {dtype}: expected auto, float32, float16 or bfloat16")
    tower_source = resolve_tower(mm.mm_image_tower, run_dir, image_tower) if mm.mm_image_tower else None
    with init_empty_weights(include_buffers=False):
        model = ArtemisForCausalLM(config, vision_config_for(tower_source) if tower_source else None)
    model_shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if not name.startswith(W.TOWER_PREFIX)}
    generation = GenerationConfig.from_model_config(model.config)
    del model

    base_files = W.weight_files(base)
    if not base_files:
        raise InputError(f"{base}: the base checkpoint has no weights")
    non_lora_path = run_dir / W.NON_LORA_FILE
    if not non_lora_path.is_file():
        raise InputError(f"{run_dir}: LoRA run without {W.NON_LORA_FILE} (the RoI module and projector weights)")
    non_lora = W.strip_peft_prefixes(W.load_bin(non_lora_path))
    file_shapes = W.read_shapes(base_files)
    file_shapes.update({name: tuple(t.shape) for name, t in non_lora.items()})
    W.compare_keys(model_shapes, file_shapes).raise_if_bad(str(run_dir))
    for name, (lora_a, lora_b) in pairs.items():
        shape = model_shapes.get(name)
        want = (lora_b.shape[0], lora_a.shape[1])
        if shape is None or (tuple(shape) != want and tuple(shape) != want[::-1]) or lora_a.shape[0] != lora_b.shape[1]:
            raise InputError(f"{run_dir}: LoRA pair for {name} (A {list(lora_a.shape)}, B {list(lora_b.shape)}) does "
                             f"not fit the model ({'no such weight' if shape is None else list(shape)})")
        if name in non_lora:
            raise InputError(f"{run_dir}: {name} has a LoRA pair and a full copy in {W.NON_LORA_FILE}")
    scaling = lora_scaling(adapter_config)
    fan_in_fan_out = bool(adapter_config.get("fan_in_fan_out", False))

    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists", hint="pass overwrite=True (--overwrite) to replace it")
    with atomic_folder(out) as tmp:
        writer = ShardWriter(tmp, parse_size(max_shard_size))
        merged = set()
        for index, path in enumerate(base_files):
            if progress is not None:
                progress(path.name, index, len(base_files))
            for name, tensor in _base_tensors(path):
                if name not in model_shapes or name in non_lora:
                    continue  # the tower, legacy rotary buffers, and weights the run replaces
                if tensor.is_floating_point():
                    tensor = tensor.to(target)
                if name in pairs:
                    tensor = merge_delta(tensor, *pairs[name], scaling, fan_in_fan_out=fan_in_fan_out)
                    merged.add(name)
                writer.add(name, tensor)
            writer.flush()  # never keep tensors of two base shards pending
        for name, tensor in non_lora.items():
            if name in model_shapes:
                writer.add(name, tensor.to(target) if tensor.is_floating_point() else tensor)
        writer.finish()
        if progress is not None:
            progress("done", len(base_files), len(base_files))
        if image_tower is not None:
            config.mm_image_tower = image_tower
        config.architectures = ["LlavaLlamaForCausalLM"]
        config.dtype = str(target).replace("torch.", "")
        config.save_pretrained(tmp)
        if (run_dir / "generation_config.json").is_file():
            generation = GenerationConfig.from_pretrained(str(run_dir))
        generation.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(tokenizer_folder(run_dir, base))).save_pretrained(tmp)
    return out
