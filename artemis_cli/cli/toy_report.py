"""The held-out table of the toy model (`artemis model train-toy`, the demo's toy step): one row per condition."""

from __future__ import annotations

from artemis_cli.demo.learn import CONDITIONS


def learn_table(learn: dict):
    """A rich `Table` of `LearnReport.to_json()`: colour, direction and both right per condition, chance below."""
    from rich.table import Table

    table = Table(title=f"held-out: {learn['videos']} videos, two targets each, asked about in turn")
    for column in ("condition", "questions", "colour", "direction", "both", "videos with A and B right"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    for name, title in CONDITIONS.items():
        row = learn["conditions"][name]
        pairs = f"{row['pairs_right']:.0%} of {row['pairs']}" if row["pairs"] else "-"
        table.add_row(title, str(row["questions"]), f"{row['colour']:.0%}", f"{row['direction']:.0%}",
                      f"{row['both']:.0%}", pairs)
    chance = learn["chance"]
    table.add_row("chance (uniform guess)", "", f"{chance['colour']:.0%}", f"{chance['direction']:.0%}",
                  f"{chance['colour'] * chance['direction']:.0%}", "", style="dim")
    return table


def print_learn_table(learn: dict) -> None:
    from artemis_cli.common.console import stdout

    stdout.print(learn_table(learn))
