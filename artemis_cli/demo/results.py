"""What a demo run did: one `StepRecord` per step and the `DemoResult` (read by the runner and the report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from artemis_cli.errors import ArtemisError


@dataclass
class StepRecord:
    """How one step went: status ok | reused | skipped | failed | not run."""

    key: str
    title: str
    status: str = "not run"
    seconds: float = 0.0
    output: Optional[str] = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    hint: Optional[str] = None


@dataclass
class DemoResult:
    out: Path
    steps: list[StepRecord]
    seconds: float
    temporary: bool
    removed: bool = False
    resumed: bool = False
    kept_report: Optional[Path] = None  # report.md of a removed temporary folder, kept here

    @property
    def failed(self) -> Optional[StepRecord]:
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def ok(self) -> bool:
        return self.failed is None

    def error(self) -> ArtemisError:
        """The error naming the failed step (raise it after showing the summary)."""
        step = self.failed
        assert step is not None
        hint = step.hint or f"ARTEMIS_DEBUG=1 artemis demo -o {self.out} shows the traceback"
        return ArtemisError(f"demo step '{step.title}' failed: {step.error}",
                            hint=f"{hint}; rerunning `artemis demo -o {self.out}` resumes at this step")

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "out": str(self.out), "seconds": round(self.seconds, 2), "removed": self.removed,
                "resumed": self.resumed, "report": str(self.kept_report or self.out / "report.md") if self.kept_report or not self.removed else None,
                "steps": [{k: v for k, v in asdict(s).items() if k != "data"} for s in self.steps],
                "scores": _step_data(self.steps, "score").get("score"),
                "judge": _step_data(self.steps, "judge").get("judge")}


def _step_data(steps: list[StepRecord], key: str) -> dict[str, Any]:
    return next((s.data for s in steps if s.key == key and s.status in ("ok", "reused")), {})
