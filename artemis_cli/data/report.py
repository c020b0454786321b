"""The problem report that `verify-layout` builds: every problem with file, record and field."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel

Severity = Literal["error", "warning"]


class Problem(BaseModel):
    severity: Severity
    kind: str
    path: str
    record: Optional[Union[int, str]] = None
    field: Optional[str] = None
    message: str

    @property
    def location(self) -> str:
        where = self.path
        if self.record is not None:
            where += f" [{self.record}]"
        if self.field:
            where += f" {self.field}"
        return where


class Report:
    """Collects problems and counts; the verdict is `ok` when no problem is an error."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.counts: Counter[str] = Counter()
        self.checked: list[str] = []  # what this run looked at, in words
        self.not_checked: list[str] = []  # what it did not, with the option that would

    def add(self, severity: Severity, kind: str, path: str, record: Any, field: Optional[str], message: str) -> None:
        self.problems.append(Problem(severity=severity, kind=kind, path=path, record=record, field=field, message=message))

    def error(self, kind: str, path: str, record: Any, field: Optional[str], message: str) -> None:
        self.add("error", kind, path, record, field, message)

    def warning(self, kind: str, path: str, record: Any, field: Optional[str], message: str) -> None:
        self.add("warning", kind, path, record, field, message)

    @property
    def n_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def ok(self) -> bool:
        return self.n_errors == 0

    def to_json(self, max_problems: int = 0) -> dict[str, Any]:
        listed = self.problems if max_problems <= 0 else self.problems[:max_problems]
        by_kind = Counter(p.kind for p in self.problems)
        counts = dict(self.counts)
        counts.update({
            "errors": self.n_errors,
            "warnings": len(self.problems) - self.n_errors,
            "problems_by_kind": dict(sorted(by_kind.items())),
            "problems_listed": len(listed),
        })
        return {"ok": self.ok, "problems": [p.model_dump() for p in listed], "counts": counts,
                "checked": self.checked, "not_checked": self.not_checked}
