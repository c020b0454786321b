"""Where a run executes: device, precision, DeepSpeed config, and the process-group variables.

DeepSpeed needs rank variables even for one process; under `torchrun`/`deepspeed` the launcher
sets them, otherwise `launch_environment` does (a free local port), so ``artemis train ...
--deepspeed zero2`` works as a plain command. Without CUDA it also selects DeepSpeed's CPU
accelerator (``DS_ACCELERATOR=cpu``), so ZeRO runs (slowly) on a laptop and in the tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional

from artemis_cli.errors import UsageError
from artemis_cli.train.config import DEEPSPEED_NAMES, TrainConfig

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def deepspeed_config_path(name: Optional[str]) -> Optional[Path]:
    """The JSON file of a shipped config (``zero2``, ``zero2_offload``, ``zero3``, ``zero3_offload``) or a path."""
    if name is None:
        return None
    if name in DEEPSPEED_NAMES:
        return Path(str(resources.files("artemis_cli.train").joinpath("ds_configs", f"{name}.json")))
    path = Path(name).expanduser()
    if not path.is_file():
        raise UsageError(f"--deepspeed {name}: not one of {', '.join(DEEPSPEED_NAMES)} and no such file")
    return path.resolve()


def resolve_device(config: TrainConfig) -> str:
    """``cpu`` or ``cuda:<local rank>``; `auto` picks CUDA when present."""
    from artemis_cli.common.devices import resolve_device as resolve_name

    device = resolve_name(config.train.device, what="train.device",
                          hint="use --set train.device=cpu (and train.precision=fp32)")
    if device == "cpu" and config.train.precision == "fp16":
        raise UsageError("train.precision fp16 needs a CUDA GPU (mixed fp16 has no CPU path)",
                         hint="use --set train.precision=fp32 (or bf16) on CPU")
    return device


def compute_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launch_environment(device: str, deepspeed: bool) -> Iterator[dict[str, str]]:
    """Set (and afterwards restore) what a single-process DeepSpeed run needs; yields what was set."""
    updates: dict[str, str] = {}
    if deepspeed:
        if "RANK" not in os.environ and "OMPI_COMM_WORLD_RANK" not in os.environ:
            updates.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        if device == "cpu" and "DS_ACCELERATOR" not in os.environ:
            updates["DS_ACCELERATOR"] = "cpu"
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield updates
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
