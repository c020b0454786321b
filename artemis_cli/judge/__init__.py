"""GPT-assisted evaluation (REFERENCE §7): prompts, strict reply parsing, cache, retrying client, runner."""

from artemis_cli.judge.output import SUMMARY_KEYS, JudgeSummary
from artemis_cli.judge.prompts import DIMENSIONS, PLACEHOLDERS, TASKS, PromptTemplate, load_template
from artemis_cli.judge.runner import JudgeOptions, judge, pin_warning

__all__ = ["DIMENSIONS", "PLACEHOLDERS", "SUMMARY_KEYS", "TASKS", "JudgeOptions", "JudgeSummary", "PromptTemplate",
           "judge", "load_template", "pin_warning"]
