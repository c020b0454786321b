"""One dtype resolver for every stage that puts weights on a device (features, model loading, the demo)."""

from __future__ import annotations

from typing import Any

from artemis_cli.errors import UsageError

DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16"}


def resolve_dtype(dtype: Any, device: Any, config: Any = None):
    """A `torch.dtype` from a name (``auto``, float32/fp32, float16/fp16/half, bfloat16/bf16) or a dtype.

    ``auto`` is float16 on CUDA, as the published eval ran (the released stage-3 config says bfloat16,
    inherited from stage 2, but its RoI module was trained and evaluated in fp16), float32 on CPU.
    `device` is a name or a `torch.device`; `config` (a checkpoint config) is accepted for callers that
    pass one, and ``auto`` does not read its dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPE_NAMES:
        raise UsageError(f"--dtype {dtype}: expected auto, float32, float16 or bfloat16")
    return getattr(torch, DTYPE_NAMES[dtype])
