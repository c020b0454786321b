"""GPT-assisted evaluation of video QA and the Video-ChatGPT dimensions: the task list, prompts, strict
reply parsing, cache, retrying client, runner."""

from artemis_cli.judge.output import SUMMARY_KEYS, JudgeSummary
from artemis_cli.judge.prompts import PromptTemplate
from artemis_cli.judge.runner import JudgeOptions, judge, pin_warning
from artemis_cli.judge.tasks import DIMENSIONS, JUDGE_TASKS, PLACEHOLDERS, TASKS, JudgeTask, load_template

__all__ = ["DIMENSIONS", "JUDGE_TASKS", "PLACEHOLDERS", "SUMMARY_KEYS", "TASKS", "JudgeOptions", "JudgeSummary",
           "JudgeTask", "PromptTemplate", "judge", "load_template", "pin_warning"]
