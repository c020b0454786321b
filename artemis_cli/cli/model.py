"""`artemis model ...`: look inside a model without loading it, merge a LoRA run, write tiny start models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from artemis_cli.cli.options import Device, JsonFlag

MERGED_MARKERS = ("model.safetensors", "model.safetensors.index.json")  # what merge-lora writes

app = typer.Typer(help="Inspect Artemis checkpoints, merge LoRA runs, write tiny start models, train the toy model.",
                  no_args_is_help=True)


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
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=320, max=600, help="Tokenizer vocabulary: 320 splits most words into pieces; 600 makes each word of the sample's captions one token (the toy recipe).")] = 320,
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
    paths = save_tiny_start(out, seed=seed, vocab_size=vocab_size)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json({name: str(path) for name, path in paths.items() if name in TINY_PARTS})
        return
    from artemis_cli.common.console import stderr

    stderr.print(f"wrote {paths['vicuna']} and {paths['clip']}")


@app.command("train-toy")
def train_toy_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", file_okay=False, help="Folder for the data, start models, runs, the merged toy model (OUT/model) and learn.json. Rerunning into it resumes.")],
    seed: Annotated[int, typer.Option(min=0, help="Seed of the data, the start models and training (the held-out videos use another).")] = 0,
    videos: Annotated[int, typer.Option(min=2, max=1000, help="Training videos, two targets each.")] = 200,
    held_out: Annotated[int, typer.Option("--held-out", min=1, max=1000, help="Fresh videos for the held-out evaluation.")] = 25,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", metavar="stageN.KEY=VALUE", help="Override one stage's config, e.g. stage3.train.epochs=2 (repeatable).")] = None,
    device: Device = "cpu",
    fresh: Annotated[bool, typer.Option("--fresh", help="Redo every step, even those an earlier run into OUT finished.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Train the toy Artemis from scratch through the normal recipe: generated videos with two moving boxes each
    (data make-sample --motion classes), tiny start models, features, train stage1-3 with the shipped toy configs,
    merge-lora, then ask it about every target of fresh held-out videos and print the table. Tens of minutes on
    2 CPU cores (about 40 measured on a shared box); every step is seeded. The shipped `--model toy` was made this way.

    Example: artemis model train-toy toy-run"""
    from pydantic import ValidationError

    from artemis_cli.cli.train import stdout_to_stderr
    from artemis_cli.common.config import format_validation_error
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.demo.toy import ToyOptions, train_toy
    from artemis_cli.errors import ConfigError

    try:
        options = ToyOptions(out=out, seed=seed, videos=videos, held_out=held_out, overrides=overrides or [],
                             device=device, fresh=fresh)
    except ValidationError as exc:
        raise ConfigError("train-toy options", format_validation_error(exc)) from None
    with stdout_to_stderr(json_out):
        result = train_toy(options, log=lambda line: stderr.print(line, soft_wrap=True, highlight=False))
    if json_out:
        print_json(result.to_json())
        return
    from artemis_cli.cli.toy_report import print_learn_table

    print_learn_table(result.learn)
    stderr.print(f"the toy model: {result.model} (use it with --model {result.model}); "
                 f"{result.seconds / 60:.1f} min in all", soft_wrap=True)


@app.command("eval-toy")
def eval_toy_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", file_okay=False, help="Folder for the held-out videos (with their features) and learn.json.")],
    model: Annotated[str, typer.Option("--model", help="The model to evaluate: toy (the shipped toy Artemis), a folder or a hub id.")] = "toy",
    videos: Annotated[int, typer.Option(min=2, max=1000, help="Held-out videos, two targets each.")] = 25,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the held-out videos (a seed's videos are never the training videos of train-toy --seed N).")] = 0,
    device: Device = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier eval-toy's OUT.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Ask a model about each target of fresh two-box videos (box on A, then on B), then with the box on empty
    background and with its RoI tokens zeroed, and print colour and motion accuracy per condition.

    Example: artemis model eval-toy toy-eval --model toy --videos 8"""
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.console import print_json
    from artemis_cli.common.paths import check_output, check_owned
    from artemis_cli.demo.toy import evaluate_model, held_out_sample
    from artemis_cli.model.loading import resolve_checkpoint

    check_output(out, kind="dir", option="OUT")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            from artemis_cli.errors import UsageError

            raise UsageError(f"OUT {out} already exists and is not empty", hint="pass --overwrite to replace it")
        check_owned(out, option="OUT", command="model eval-toy", markers=("learn.json",))
    folder = resolve_checkpoint(model)
    from artemis_cli.model.checkpoint import resolve_tower
    from artemis_cli.model.config import MMSettings, read_config_json

    clip = Path(resolve_tower(MMSettings.of(read_config_json(folder)).mm_image_tower or "", folder))
    sample = held_out_sample(out / "held_out", seed=seed, videos=videos, clip=clip, device=device,
                             show_progress=not json_out)
    report = evaluate_model(folder, sample, device=device, show_progress=not json_out)
    atomic_write_json(out / "learn.json", report.to_json(answers=True))
    if json_out:
        print_json(report.to_json())
        return
    from artemis_cli.cli.toy_report import print_learn_table

    print_learn_table(report.to_json())
