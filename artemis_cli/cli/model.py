"""`artemis model ...`: look inside a model without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import JsonFlag

app = typer.Typer(help="Inspect Artemis models and checkpoints.", no_args_is_help=True)


@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="A checkpoint folder (merged, LoRA run or projector-only) or a config.json.")],
    model_base: Annotated[Optional[Path], typer.Option("--model-base", help="Base checkpoint of a LoRA / projector-only folder, to check the full weight set.")] = None,
    image_tower: Annotated[Optional[str], typer.Option("--image-tower", help="Local CLIP folder overriding the config's mm_image_tower.")] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="List at most N missing/unexpected/mismatched names (0: all).")] = 20,
    json_out: JsonFlag = False,
) -> None:
    """Build the model on the meta device (no memory, offline) and count its parameters per group;
    for a checkpoint folder also list missing / unexpected / mis-shaped weights. Exit 1 if any."""
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
