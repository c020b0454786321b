"""Device names: one validator for config fields and one resolver that every stage uses."""

from __future__ import annotations

import os
import re
from typing import Annotated, Mapping, Optional

from pydantic import AfterValidator

from artemis_cli.errors import UsageError

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return value


DeviceName = Annotated[str, AfterValidator(_check_device)]


def resolve_device(device: str = "auto", *, what: str = "--device", env: Optional[Mapping[str, str]] = None,
                   hint: str = "use --device cpu") -> str:
    """``auto`` -> CUDA when present, else CPU; plain ``cuda`` -> ``cuda:$LOCAL_RANK`` (one GPU per
    torchrun rank), else the current device. A CUDA device always carries its index
    (``torch.cuda.set_device`` refuses one without). No CUDA for a CUDA name is a `UsageError`."""
    import torch

    env = os.environ if env is None else env
    resolved = device
    if resolved == "auto":
        resolved = "cuda" if torch.cuda.is_available() else "cpu"
    if resolved.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{what} {device}: CUDA is not available on this machine", hint=hint)
    if resolved == "cuda":
        index = int(env["LOCAL_RANK"]) if "LOCAL_RANK" in env else torch.cuda.current_device()
        resolved = f"cuda:{index}"
    return resolved
