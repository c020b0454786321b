"""`artemis model ...`: look inside a model without loading it, merge a LoRA run, write tiny start models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from artemis_cli.cli.options import JsonFlag

MERGED_MARKERS = ("model.safetensors", "model.safetensors.index.json")  # what merge-lora writes

app = typer.Typer(help="Inspect Artemis checkpoints, merge LoRA runs, write tiny start models.", no_args_is_help=True)


@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(metavar="PATH_OR_CONFIG", exists=True, help="A checkpoint folder (merged, LoRA run or projector-only) or a config.json.")],
    model_base: Annotated[Optional[Path], typer.Option("--model-base", help="Base checkpoint of a LoRA / projector-only folder, to check the full weight set.")] = None,
    image_tower: Annotated[Optional[str], typer.Option("--image-tower", help="Local CLIP folder overriding the config's mm_image_tower.")] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="List at most N missing/unexpected/mismatched names (0: all).")] = 20,
    json_out: JsonFlag = False,
) -> None:
    """Build the model on the meta device (no memory, offline) and count its parameters per group;
    for a checkpoint folder also list missing / unexpected / mis-shaped weights. Exit 1 if any.

    Example: artemis model inspect ./checkpoints/Artemis-7b"""
    from artemis_cli.model.inspect import inspect_model

    report = inspect_model(path, model_base=model_base, image_tower=image_tower)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json(report.to_json())
    else:
        _print_report(report, show)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report, show: int) -> None:
    from rich.table import Table

    from artemis_cli.common.console import stdout

    table = Table(title=f"{report.source} ({report.kind})")
    for column in ("group", "parameters", "tensors", "dtype"):
        table.add_column(column, justify="right" if column in ("parameters", "tensors") else "left")
    for group in ("llm", "projector", "roi", "tower"):
        entry = report.groups.get(group)
        if entry:
            table.add_row(group, f"{entry['parameters']:,}", str(entry["tensors"]), ", ".join(entry["dtypes"]))
    table.add_row("total", f"{report.total:,}", str(len(report.parameters)), "", style="bold")
    stdout.print(table)
    if not report.checked:
        return
    for title, names in (("missing", report.missing), ("unexpected", report.unexpected), ("mismatched", report.mismatched)):
        limit = show or len(names)
        stdout.print(f"{title}: {len(names)}")
        for name in names[:limit]:
            stdout.print(f"  {name}", soft_wrap=True)
        if len(names) > limit:
            stdout.print(f"  ... and {len(names) - limit} more (--show 0 lists all)")
    stdout.print("weights match the model (image tower exempt)" if report.ok else "weights do NOT match the model")


@app.command("merge-lora")
def merge_lora_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", exists=True, file_okay=False, help="A stage-3 run folder (or checkpoint-N): adapter + non_lora_trainables.bin.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write the merged model to (new, or a merged model to replace with --overwrite).")],
    base: Annotated[Path, typer.Option("--base", exists=True, help="The model the run started from (the stage-2 checkpoint).")],
    dtype: Annotated[Literal["auto", "float32", "float16", "bfloat16"], typer.Option("--dtype", help="auto: the checkpoint's.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete an existing OUT first (only a merged model folder; never RUN_DIR or --base).")] = False,
    image_tower: Annotated[Optional[str], typer.Option("--image-tower", help="Local CLIP folder overriding the config's mm_image_tower (also written into the merged config).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Merge a LoRA run into its base model and write a merged checkpoint (config, safetensors, tokenizer).

    Shard by shard on CPU in the checkpoint's dtype (bfloat16 for the released Artemis-7B): about one base
    shard in memory, so the 7B merges on a 24 GB machine; the result equals peft's merge.

    Example: artemis model merge-lora ./checkpoints/Artemis-7b-lora ./checkpoints/Artemis-7b --base ./checkpoints/Artemis-7b-ftune"""
    from artemis_cli.common.paths import check_output, check_owned
    from artemis_cli.errors import UsageError
    from artemis_cli.model.loading import checkpoint_kind, merge_lora, resolve_checkpoint
    from artemis_cli.model.weights import check_adapter

    check_output(out, kind="dir", option="OUT", inputs={"RUN_DIR": run_dir, "--base": base})
    if out.exists() and overwrite:
        check_owned(out, option="OUT", command="model merge-lora", markers=MERGED_MARKERS)
    folder = resolve_checkpoint(run_dir, option="RUN_DIR")
    if checkpoint_kind(folder) != "lora":
        raise UsageError(f"{folder} is not a LoRA run (no adapter_config.json)",
                         hint="pass the output folder of `artemis train stage3` (or one of its checkpoint-N)")
    check_adapter(folder)  # a truncated adapter_config.json, an adapter without LoRA tensors: before any work
    merged = merge_lora(folder, base, out, dtype=dtype, overwrite=overwrite, image_tower=image_tower)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json({"merged": str(merged), "run": str(folder), "base": str(base)})
        return
    from artemis_cli.common.console import stderr

    stderr.print(f"wrote the merged model to {merged}")


@app.command("make-tiny")
def make_tiny_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write vicuna/ (tiny Llama + tokenizer) and clip/ (tiny CLIP) into.")],
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace tiny models an earlier make-tiny wrote in OUT (nothing else is removed).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Write tiny random start checkpoints (a 2-layer Llama of width 64, a CLIP tower of width 64 with the real
    224 px / patch-14 geometry) for trying the training stages on CPU with `examples/configs/sample_stage*.yaml`.

    Example: artemis model make-tiny artemis-sample/tiny"""
    from artemis_cli.common.paths import check_output
    from artemis_cli.model.tiny import TINY_PARTS, check_tiny_target, save_tiny_start

    check_output(out, kind="dir", option="OUT")
    check_tiny_target(out, overwrite=overwrite)
    paths = save_tiny_start(out, seed=seed)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json({name: str(path) for name, path in paths.items() if name in TINY_PARTS})
        return
    from artemis_cli.common.console import stderr

    stderr.print(f"wrote {paths['vicuna']} and {paths['clip']}")
