"""Rich tables (or JSON) for `artemis infer` runs and `artemis infer merge`."""

from __future__ import annotations

from rich.table import Table

from artemis_cli.common.console import print_json, stderr, stdout
from artemis_cli.infer import InferSummary, MergeReport

MAX_LISTED = 20


def print_run_summary(summary: InferSummary, json_out: bool) -> None:
    if json_out:
        print_json(summary.to_json())
        return
    table = Table(title="infer", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    if summary.shard.count > 1:
        table.add_row("shard", f"{summary.shard.index} of {summary.shard.count} (0-based)")
    table.add_row("samples", str(summary.total))
    table.add_row("done now", str(summary.done))
    table.add_row("skipped (already done)", str(summary.skipped))
    table.add_row("failed", f"[red]{summary.failed}[/red]" if summary.failed else "0")
    table.add_row("batch size", str(summary.batch_size))
    table.add_row("samples/s", f"{summary.samples_per_s:.3f}")
    table.add_row("decoding", ", ".join(f"{k}={v}" for k, v in summary.decoding.items()))
    table.add_row("output", str(summary.paths.output))
    table.add_row("manifest", str(summary.paths.manifest))
    if summary.repaired:
        table.add_row("note", "cut a torn last line left by a killed run; that sample was redone")
    stdout.print(table)
    if summary.failures:
        failed = Table(title=f"failed samples (all in {summary.paths.errors})", title_justify="left")
        for column in ("id", "stage", "error"):
            failed.add_column(column, overflow="fold")
        for failure in summary.failures[:MAX_LISTED]:
            failed.add_row(failure["id"], failure["stage"], failure["error"])
        stdout.print(failed)
        if summary.failed > MAX_LISTED:
            stdout.print(f"... and {summary.failed - MAX_LISTED} more")
        stdout.print("rerun the same command to retry them (finished samples are skipped)")
    if summary.shard.count > 1:
        target = summary.requested_output
        pattern = summary.paths.output.with_name(summary.paths.output.name.replace(
            f".shard-{summary.shard.index}-of-", ".shard-*-of-"))
        stdout.print(f"when every shard is done: artemis infer merge {target} {pattern}", soft_wrap=True)


def _listed(title: str, ids: list, notes: dict | None = None) -> None:
    if not ids:
        return
    stderr.print(f"{title}: {len(ids)}")
    for key in ids[:MAX_LISTED]:
        reason = (notes or {}).get(key)
        stderr.print(f"  {key}" + (f"  (failed: {reason})" if reason else ""), soft_wrap=True)
    if len(ids) > MAX_LISTED:
        stderr.print(f"  ... and {len(ids) - MAX_LISTED} more (--json lists all)")


def print_merge_report(report: MergeReport, json_out: bool) -> None:
    if json_out:
        print_json(report.to_json())
    else:
        table = Table(title="infer merge", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("input ids", str(report.inputs))
        table.add_row("written", f"{report.written} -> {report.output}" if report.wrote else "nothing written")
        for name, values in (("missing", report.missing), ("duplicate", report.duplicates),
                             ("unknown", report.unknown), ("missing shards", report.missing_shards)):
            table.add_row(name, f"[red]{len(values)}[/red]" if values else "0")
        stdout.print(table)
    for note in report.notes:
        stderr.print(f"note: {note}", soft_wrap=True)
    if report.missing_shards:
        stderr.print(f"missing shard index(es): {report.missing_shards}")
    _listed("missing ids", report.missing, report.failed)
    _listed("duplicate ids", report.duplicates)
    _listed("ids not in the input", report.unknown)
