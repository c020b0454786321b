"""Option aliases shared by several commands, so the same flag means the same thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (tables go to stderr).")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Skip malformed records, count and list them, instead of stopping.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist instead of resuming.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
NumShards = Annotated[Optional[int], typer.Option("--num-shards", min=1, help="Split the work into N shards (default: from torchrun's WORLD_SIZE, else 1).")]
ShardIndex = Annotated[Optional[int], typer.Option("--shard-index", min=0, help="Which shard to run (default: from torchrun's RANK, else 0).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (float16 on CUDA, as the published eval ran; float32 on CPU), float32, float16 or bfloat16.")]
Quantize = Annotated[str, typer.Option("--quantize", help="Weight-only quantisation of the LLM (tower and RoI module "
                                       "keep their dtype): none, int8 (torchao; CPU and CUDA), int4 (torchao; CUDA, "
                                       "bfloat16) or nf4 (bitsandbytes; CUDA).")]
ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def name_options(problems: list[str], known: "set[str] | dict[str, str]", prefixes: tuple[str, ...] = ()) -> list[str]:
    """Config problems named by the user's option: ``format: ...`` -> ``--format: ... (format)``;
    ``task.qa.dataset: ...`` -> ``--dataset: ... (task.qa.dataset)``. `known` lists the config fields
    that are command-line options (a dict maps a field to its flag); `prefixes` are the config sections
    whose fields are options (``task.qa.``, ``decoding.``)."""
    named = []
    for line in problems:
        location, sep, message = line.partition(": ")
        field = location
        for prefix in prefixes:
            if location.startswith(prefix):
                field = location[len(prefix):].split(".")[0]
                break
        field = field.split(".")[0]
        flag = known.get(field) if isinstance(known, dict) else (f"--{field.replace('_', '-')}" if field in known else None)
        named.append(f"{flag}: {message} ({location})" if flag and sep and flag != location else line)
    return named
