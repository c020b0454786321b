"""Rich tables for `artemis features extract` and `artemis features inspect` (on stderr)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from artemis_cli.common.console import stderr
from artemis_cli.features.extract import ExtractSummary
from artemis_cli.features.inspect import FeatureInfo


def print_extract_summary(summary: ExtractSummary, max_failures: int = 20) -> None:
    table = Table(title="features extract", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    shard = f"{summary.shard_index} of {summary.num_shards}" if summary.num_shards > 1 else "all"
    rows = [("output", summary.output), ("model", f"{summary.model['backend']}: {summary.model['model']}"),
            ("device", f"{summary.device} {summary.dtype}"), ("shard", shard), ("videos", str(summary.total)),
            ("written", str(summary.written)), ("skipped (already done)", str(summary.skipped)),
            ("failed", f"[red]{summary.failed}[/red]" if summary.failed else "0"),
            ("time", f"{summary.seconds:.1f} s")]
    if summary.seconds and summary.written:
        rows.append(("speed", f"{summary.written / summary.seconds:.2f} videos/s, {summary.frames / summary.seconds:,.0f} frames/s"))
    for key, value in rows:
        table.add_row(key, value)
    stderr.print(table)
    for failure in summary.failures[:max_failures]:
        stderr.print(f"[red]failed[/red] {failure['name']}: {failure['reason']}", soft_wrap=True)
    if summary.failed > max_failures:
        stderr.print(f"... and {summary.failed - max_failures} more in failures.jsonl")


def print_inspect_table(infos: list[FeatureInfo]) -> None:
    table = Table(title="features inspect")
    for column in ("file", "shape", "dtype", "frames", "min", "max", "mean", "std", "status"):
        table.add_column(column, justify="right" if column in ("frames", "min", "max", "mean", "std") else "left",
                         no_wrap=column != "file", overflow="fold")

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    notes = []
    for info in infos:
        name = Path(info.path).name
        status = "[red]invalid[/red]" if not info.ok else "[yellow]ok*[/yellow]" if info.warnings else "[green]ok[/green]"
        table.add_row(name, "x".join(map(str, info.shape)) if info.shape else "-", info.dtype or "-",
                      "-" if info.frames is None else str(info.frames), num(info.min), num(info.max),
                      num(info.mean), num(info.std), status)
        notes += [f"[red]invalid[/red] {info.path}: {p}" for p in info.problems]
        notes += [f"[yellow]note[/yellow] {info.path}: {w}" for w in info.warnings]
    stderr.print(table)
    for note in notes:
        stderr.print(note, soft_wrap=True)
    widths = {info.shape[1] for info in infos if info.ok and info.shape}
    if len(widths) > 1:
        stderr.print(f"[yellow]note:[/yellow] files have different widths C: {sorted(widths)}")
    bad = sum(not info.ok for info in infos)
    stderr.print(f"{len(infos)} file(s), {bad} invalid" if bad else f"{len(infos)} file(s), all valid")
