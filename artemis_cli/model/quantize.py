"""Low-memory loading: weight-only quantisation of the LLM (`--quantize int8|int4|nf4`).

Only the language model's linear layers (the decoder layers' projections and `lm_head`) are
quantised; the CLIP tower, the projector and the RoI module stay in the loaded dtype, as does the
token embedding. Activations keep the model's dtype (weight-only), so prompts, splicing and batched
generation are unchanged.

- ``int8``: torchao `Int8WeightOnlyConfig` (per-row int8 weights); CPU and CUDA.
- ``int4``: torchao `Int4WeightOnlyConfig` with the tile-packed layout (the tinygemm int4 kernel,
  bfloat16, groups of 128 or the largest of 64/32 that divides a layer's input width). torchao 0.18 has
  no CPU int4 kernel on x86 (its plain layout needs the CUDA-only `mslk` package and the CPU layouts
  are gone), so on CPU this is refused before anything loads.
- ``nf4``: bitsandbytes 4-bit NormalFloat (`Linear4bit`), CUDA only; refused elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from artemis_cli.errors import UsageError

Quantize = Literal["none", "int8", "int4", "nf4"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)
INT4_GROUP_SIZES = (128, 64, 32)

# Parameter-name prefixes of each part of an Artemis model (for the memory report).
PARTS = {"tower": "model.image_tower.", "roi": "model.spi_model.", "projector": "model.mm_projector."}


@dataclass
class QuantizeReport:
    """What `quantize_llm` did: the mode, how many linear layers it quantised, and which it left as they
    were (a layer whose input width no int4 group size divides)."""

    mode: str
    quantized: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "quantized_linears": self.quantized, "skipped": self.skipped}


def check_quantize(mode: str, device: str) -> None:
    """Refuse a mode this machine cannot run (before a model is loaded): a `UsageError` naming the fix."""
    if mode not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize {mode}: expected one of {', '.join(QUANTIZE_CHOICES)}")
    if mode == "none":
        return
    on_cuda = str(device).startswith("cuda")
    if mode == "nf4":
        if not on_cuda:
            raise UsageError(f"--quantize nf4 needs a CUDA GPU (bitsandbytes' 4-bit kernels); the device is {device}",
                             hint="use --quantize int8 on CPU (torchao), or run on a GPU")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UsageError("--quantize nf4 needs bitsandbytes, which is not installed",
                             hint="pip install bitsandbytes (or use --quantize int4: torchao)") from None
        return
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise UsageError(f"--quantize {mode} needs torchao, which is not installed",
                         hint="pip install 'artemis[quant]'") from None
    if mode == "int4" and not on_cuda:
        raise UsageError(f"--quantize int4 needs a CUDA GPU: torchao's int4 weight-only kernels (tinygemm, "
                         f"mslk) do not run on {device} here",
                         hint="use --quantize int8 on CPU (about half the memory of bf16 weights)")


def int4_dtype(dtype: Any):
    """The dtype an int4 model loads in: bfloat16 (the tinygemm kernel's only dtype); `auto` picks it."""
    import torch

    if dtype == "auto" or dtype == torch.bfloat16 or dtype in ("bfloat16", "bf16"):
        return torch.bfloat16
    raise UsageError(f"--quantize int4 runs in bfloat16 only (torchao's tile-packed int4 kernel), not {dtype}",
                     hint="drop --dtype (auto) or pass --dtype bfloat16")


def llm_linear_names(model) -> list[str]:
    """Qualified names of the LLM's `nn.Linear` layers: decoder projections and `lm_head` (not the
    tower, the projector or the RoI module)."""
    from torch import nn

    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and (name.startswith("model.layers.") or name == "lm_head")]


def _int4_group(in_features: int) -> int | None:
    return next((g for g in INT4_GROUP_SIZES if in_features % g == 0), None)


def quantize_llm(model, mode: str) -> QuantizeReport:
    """Quantise the LLM's linear layers of a loaded model in place (weights already on their device);
    returns what was done. `mode` ``none`` does nothing."""
    report = QuantizeReport(mode=mode)
    if mode == "none":
        return report
    check_quantize(mode, str(model.get_input_embeddings().weight.device))
    names = set(llm_linear_names(model))
    if mode == "nf4":
        report.quantized = _to_nf4(model, names)
        return report
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    if mode == "int8":
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, name: name in names)
        report.quantized = len(names)
        return report
    by_group: dict[int, set[str]] = {}
    for name in sorted(names):
        group = _int4_group(model.get_submodule(name).in_features)
        if group is None:
            report.skipped.append(name)
        else:
            by_group.setdefault(group, set()).add(name)
    for group, members in by_group.items():
        config = Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d")
        quantize_(model, config, filter_fn=lambda module, name, members=members: name in members)
        report.quantized += len(members)
    return report


def _to_nf4(model, names: set[str]) -> int:
    """Swap each named `nn.Linear` for a bitsandbytes NF4 `Linear4bit` (quantised when moved to CUDA)."""
    import bitsandbytes as bnb

    for name in sorted(names):
        linear = model.get_submodule(name)
        device, dtype = linear.weight.device, linear.weight.dtype
        replacement = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                        compute_dtype=dtype, quant_type="nf4", device="cpu")
        replacement.weight = bnb.nn.Params4bit(linear.weight.data.to("cpu"), requires_grad=False, quant_type="nf4")
        if linear.bias is not None:
            replacement.bias = type(linear.bias)(linear.bias.data.to("cpu"), requires_grad=False)
        replacement = replacement.to(device)  # quantises the weight on the GPU
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    return len(names)


def tensor_bytes(tensor) -> int:
    """Bytes a (possibly quantised tensor-subclass) parameter holds: the sum over its inner tensors."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor).__name__ not in ("Tensor", "Parameter"):
        inner, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in inner)
    quant_state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit: packed data + absmax
    extra = 0
    if quant_state is not None and getattr(quant_state, "absmax", None) is not None:
        extra = quant_state.absmax.numel() * quant_state.absmax.element_size()
    return tensor.numel() * tensor.element_size() + extra


def model_memory(model) -> dict[str, int]:
    """Bytes of parameters and buffers per part: llm (embeddings, decoder, norm, lm_head), tower, roi,
    projector, and total."""
    sizes = dict.fromkeys(("llm", *PARTS), 0)
    seen: set[int] = set()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        part = next((p for p, prefix in PARTS.items() if name.startswith(prefix)), "llm")
        sizes[part] += tensor_bytes(tensor)
    sizes["total"] = sum(sizes.values())
    return sizes
