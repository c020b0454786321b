"""`artemis train stage1|stage2|stage3`: the published three-stage recipe from a YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from artemis_cli.cli.options import JsonFlag, SkipBad

app = typer.Typer(help="Train the three Artemis stages (HF Trainer + DeepSpeed + peft).", no_args_is_help=True)

STAGE_HELP = {
    1: "Stage 1: train the projector on image/video-feature captions (start: Vicuna). Writes mm_projector.bin.",
    2: "Stage 2: train the LLM and projector on instruction data (start: Vicuna + stage-1 projector). Writes a full model.",
    3: "Stage 3: LoRA + RoI module + projector on referring records (start: stage 2). Writes the adapter and "
       "non_lora_trainables.bin; `artemis model merge-lora` merges them.",
}

ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", exists=True, dir_okay=False, metavar="FILE", help="Run config YAML (see examples/configs/); keys left out take the stage's published recipe.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a config key, e.g. --set train.lr=1e-4 (repeatable).")]
DeepSpeedOption = Annotated[Optional[str], typer.Option("--deepspeed", help="zero2, zero2_offload, zero3, zero3_offload, a DeepSpeed JSON file, or none.")]
OutputDir = Annotated[Optional[Path], typer.Option("--output", "-o", metavar="DIR", help="Run folder (same as --set train.output_dir=...).")]
OutputDirAlias = Annotated[Optional[Path], typer.Option("--output-dir", hidden=True, help="Old spelling of --output.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run folder's last checkpoint (weights, optimizer, scheduler, RNG).")]
TrainOverwrite = Annotated[bool, typer.Option("--overwrite", help="Delete the run folder's earlier run and start "
                                              "over (only a folder with an artemis train_config.yaml).")]
LocalRank = Annotated[Optional[int], typer.Option("--local_rank", "--local-rank", hidden=True, help="Set by the deepspeed launcher; the LOCAL_RANK variable is used.")]


def stdout_to_stderr(enabled: bool):
    """With --json, everything but the result goes to stderr (DeepSpeed logs and compiler output write
    to stdout, at the Python and at the file-descriptor level): `artemis_cli.common.quiet.json_stdout`."""
    from artemis_cli.common.quiet import json_stdout

    return json_stdout(enabled)


def run_stage(stage: int, config: Optional[Path], sets: Optional[list[str]], deepspeed: Optional[str],
              output_dir: Optional[Path], resume: bool, overwrite: bool, skip_bad: bool, json_out: bool) -> None:
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.common.paths import check_output
    from artemis_cli.train.config import load_train_config

    overrides = list(sets or [])
    if deepspeed is not None:
        overrides.append(f"train.deepspeed={deepspeed}")
    if output_dir is not None:
        overrides.append(f"train.output_dir={output_dir}")
    run_config = load_train_config(stage, config, overrides)  # every config problem before torch is imported
    check_output(run_config.train.output_dir, kind="dir", option="train.output_dir (--output)",
                 inputs={"model.path": _local_path(run_config.model.path), "model.base": _local_path(run_config.model.base),
                         "data.root": getattr(run_config.data, "root", None), "--config": config})
    from artemis_cli.train.launch import is_main_process
    from artemis_cli.train.run import train

    with stdout_to_stderr(json_out):
        result = train(run_config, resume=resume, overwrite=overwrite, skip_bad=skip_bad,
                       show_progress=not json_out, config_source=str(config) if config else None)
    if not is_main_process():  # under torchrun only rank 0 reports
        return
    if json_out:
        print_json(result.to_json())
        return
    _print_result(result, stderr)


def _local_path(value: Optional[str]) -> Optional[Path]:
    """A config's checkpoint entry when it is a local folder (hub ids are not inputs on disk)."""
    return Path(value) if value and Path(value).exists() else None


def _print_result(result, console) -> None:
    from rich.table import Table

    table = Table(title=f"stage {result.stage}: {result.output_dir}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [("optimizer steps", str(result.global_step)),
            ("train loss (mean)", "-" if result.train_loss is None else f"{result.train_loss:.4f}"),
            ("last logged loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}"),
            ("tokens/s (last log)", "-" if result.tokens_per_s is None else f"{result.tokens_per_s:,.0f}"),
            ("samples / skipped", f"{result.samples:,} / {result.skipped:,}"),
            ("trainable / total parameters", f"{result.trainable_parameters:,} / {result.total_parameters:,}"),
            ("outputs", ", ".join(result.outputs)),
            ("runtime", f"{result.runtime_s:.1f} s")]
    if result.resumed_from:
        rows.insert(0, ("resumed from", result.resumed_from))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _command(stage: int) -> Callable[..., None]:
    def command(config: ConfigFile = None, sets: SetOption = None, deepspeed: DeepSpeedOption = None,
                output_dir: OutputDir = None, resume: Resume = False, overwrite: TrainOverwrite = False,
                skip_bad: SkipBad = False, json_out: JsonFlag = False, local_rank: LocalRank = None,
                output_dir_alias: OutputDirAlias = None) -> None:
        from artemis_cli.errors import UsageError

        if output_dir is not None and output_dir_alias is not None and output_dir != output_dir_alias:
            raise UsageError("--output and --output-dir (its old spelling) name different folders")
        run_stage(stage, config, sets, deepspeed, output_dir or output_dir_alias, resume, overwrite, skip_bad,
                  json_out)

    command.__doc__ = STAGE_HELP[stage]
    return command


for _stage in (1, 2, 3):
    _help = f"{STAGE_HELP[_stage]}\n\nExample: artemis train stage{_stage} -c examples/configs/sample_stage{_stage}.yaml"
    app.command(f"stage{_stage}", help=_help)(_command(_stage))
