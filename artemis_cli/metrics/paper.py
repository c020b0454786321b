"""The paper's VideoRefBench table (Table 1 of arXiv 2406.00258), so a reproduction reads against it.

Columns in the paper's order and scale (x100): BERTScore, BLEU@4, METEOR, ROUGE_L, CIDEr, SPICE. The
published Artemis-7B row is given for the last five; its BERTScore settings were not published (and
later papers dropped the column), so that cell stays empty rather than inviting a comparison across
unknown protocols.
"""

from __future__ import annotations

from typing import Any, Optional

# (column header, our metric key): BERTScore is bert-score's F1 mean, the others pycocoevalcap's.
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("BERTScore", "BERTScore_F1"), ("BLEU@4", "Bleu_4"), ("METEOR", "METEOR"), ("ROUGE_L", "ROUGE_L"),
    ("CIDEr", "CIDEr"), ("SPICE", "SPICE"),
)
PUBLISHED_ROWS: dict[str, dict[str, Optional[float]]] = {
    "Artemis-7B (paper)": {"BERTScore": None, "BLEU@4": 15.5, "METEOR": 18.0, "ROUGE_L": 40.8, "CIDEr": 53.2,
                           "SPICE": 25.4},
}
PUBLISHED_NOTE = "paper: arXiv 2406.00258, Table 1 (VideoRefBench); its BERTScore settings are not published"


def _ours(report) -> dict[str, Optional[float]]:
    values = dict(report.metrics)
    bert = getattr(report, "bertscore", None)
    values["BERTScore_F1"] = None if bert is None else bert["F1"]
    row = {}
    for column, key in PAPER_COLUMNS:
        value = values.get(key)
        row[column] = None if value is None or value != value else round(value * 100, 1)
    return row


def paper_table_json(report) -> dict[str, Any]:
    """Both rows as numbers (x100, one decimal; None where not computed or not published)."""
    bert = getattr(report, "bertscore", None)
    return {
        "columns": [column for column, _ in PAPER_COLUMNS], "scale": 100,
        "rows": {"this run": _ours(report), **{name: dict(row) for name, row in PUBLISHED_ROWS.items()}},
        "bertscore_hash": None if bert is None else bert["hash"],
        "note": PUBLISHED_NOTE,
    }
