"""`artemis score` output beside the COCO table: the paper's Table 1 columns (`--table`) and BERTScore."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from artemis_cli.metrics.paper import paper_table_json


def build_paper_table(report) -> Table:
    data = paper_table_json(report)
    table = Table(title="VideoRefBench in the paper's columns (x100)", title_justify="left",
                  caption=data["note"] + (f"; this run's BERTScore: {data['bertscore_hash']}" if data["bertscore_hash"] else ""))
    table.add_column("")
    for column in data["columns"]:
        table.add_column(column, justify="right")
    for name, row in data["rows"].items():
        table.add_row(name, *("-" if row[column] is None else f"{row[column]:.1f}" for column in data["columns"]))
    return table


def print_bertscore(report, console: Console) -> None:
    """One line: P / R / F1 means (x100) and the settings hash that defines them."""
    bert = getattr(report, "bertscore", None)
    if bert is None:
        return
    console.print(f"BERTScore (x100): P {bert['P'] * 100:.1f}, R {bert['R'] * 100:.1f}, F1 {bert['F1'] * 100:.1f} "
                  f"[dim]({bert['hash']})[/]", soft_wrap=True)
