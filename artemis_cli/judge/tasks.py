"""The judge tasks: one `JudgeTask` per task in one list, `JUDGE_TASKS`.

A task names the prediction record it reads (`data.benchmarks.PREDICTIONS`: its roles are the
prompt's placeholders), its default prompt (the published rubric in our own words, asking for a
JSON object), its reply schema (a 0-5 ``score``, with a yes/no ``pred`` for QA) and so its
aggregation (the mean score, and for a yes/no task the accuracy). `judge gpt --task`, the prompt
checks, the reply parser, the summary and the demo all read this list, so a new task is one entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from artemis_cli.data.benchmarks import PREDICTIONS, PredictionSchema
from artemis_cli.errors import UsageError
from artemis_cli.judge.prompts import PromptTemplate, placeholders_in, read_template_file


@dataclass(frozen=True)
class JudgeTask:
    """One judge task: what it reads, what it asks, what a reply must hold and how replies add up."""

    name: str
    prediction: PredictionSchema
    template: PromptTemplate
    yes_no: bool = False  # the reply also says "pred": yes/no, and the summary gives the accuracy
    completion_tokens: int = 6  # a reply's size, for --dry-run estimates ('{"score": 4}')
    about: str = ""

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The prompt's placeholders: the prediction record's text roles, in documented order."""
        return tuple(role for role in self.prediction.roles if role not in ("video", "reference"))

    @property
    def verdict_keys(self) -> tuple[str, ...]:
        return ("pred", "score") if self.yes_no else ("score",)


_JSON_QA = 'Reply with one JSON object and nothing else, for example {"pred": "yes", "score": 4}.'
_JSON_SCORE = 'Reply with one JSON object and nothing else, for example {"score": 3}.'
_SCALE = "an integer from 0 (worst) to 5 (best)"

_SYSTEM_INTRO = (
    "You are a careful grader of answers that a model gave to questions about videos. "
    "You cannot see the video: the correct answer is your description of it. "
)

_QA = PromptTemplate(
    system=_SYSTEM_INTRO + (
        "Decide whether the predicted answer means the same as the correct answer.\n"
        "- Judge meaning, not wording: synonyms and paraphrases match.\n"
        "- A prediction that adds claims contradicting the correct answer does not match.\n"
        "- Give a score for how well the meaning matches."
    ),
    user=(
        "Question: {question}\nCorrect answer: {answer}\nPredicted answer: {pred}\n\n"
        'Does the predicted answer match the correct answer? Give "pred" as "yes" or "no" and '
        f'"score" as {_SCALE} for the quality of the match. ' + _JSON_QA
    ),
)


def _dimension(aspect: str, rules: str) -> PromptTemplate:
    return PromptTemplate(
        system=_SYSTEM_INTRO + f"Rate the {aspect} of the predicted answer.\n" + rules,
        user=(
            "Question: {question}\nCorrect answer: {answer}\nPredicted answer: {pred}\n\n"
            f'Give "score" as {_SCALE} for the {aspect} of the predicted answer. ' + _JSON_SCORE
        ),
    )


_CORRECTNESS = _dimension("correctness of information", (
    "- Every fact the prediction states must agree with the correct answer.\n"
    "- Contradictions and invented details lower the score; paraphrases are fine."
))
_DETAIL = _dimension("detail orientation", (
    "- Completeness: does the prediction cover all the main points of the correct answer?\n"
    "- Specificity: does it give concrete details tied to this video rather than generic statements?\n"
    "- Paraphrases are fine; score both aspects together."
))
_CONTEXT = _dimension("contextual understanding", (
    "- Does the prediction fit the overall context of the video as the correct answer describes it?\n"
    "- Statements that are out of place or miss the broader situation lower the score."
))
_TEMPORAL = _dimension("temporal understanding", (
    "- Does the prediction get the order, timing and succession of events right?\n"
    "- Events in the wrong order or at the wrong time lower the score; paraphrases are fine."
))
_CONSISTENCY = PromptTemplate(
    system=_SYSTEM_INTRO + (
        "You get two paraphrased questions about the same thing, one correct answer for both, and "
        "the model's answer to each question. Rate their consistency.\n"
        "- Both predictions must agree with each other and with the correct answer.\n"
        "- Contradictions between them, or a large difference in what they convey, lower the score.\n"
        "- Paraphrases are fine as long as the information stays the same."
    ),
    user=(
        "Question 1: {question1}\nQuestion 2: {question2}\nCorrect answer: {answer}\n"
        "Predicted answer to question 1: {pred1}\nPredicted answer to question 2: {pred2}\n\n"
        f'Give "score" as {_SCALE} for the consistency of the two predicted answers. ' + _JSON_SCORE
    ),
)


JUDGE_TASKS: dict[str, JudgeTask] = {task.name: task for task in (
    JudgeTask("qa", PREDICTIONS["qa"], _QA, yes_no=True, completion_tokens=14,
              about="yes/no + score 0-5: accuracy and mean score"),
    JudgeTask("correctness", PREDICTIONS["vcg"], _CORRECTNESS, about="correctness of information, 0-5"),
    JudgeTask("detail", PREDICTIONS["vcg"], _DETAIL, about="detail orientation, 0-5"),
    JudgeTask("context", PREDICTIONS["vcg"], _CONTEXT, about="contextual understanding, 0-5"),
    JudgeTask("temporal", PREDICTIONS["vcg"], _TEMPORAL, about="temporal understanding, 0-5"),
    JudgeTask("consistency", PREDICTIONS["consistency"], _CONSISTENCY, about="consistency of two answers, 0-5"),
)}


def judge_task(task: "str | JudgeTask") -> JudgeTask:
    """The registered task named `task` (a `UsageError` naming the choices otherwise)."""
    if isinstance(task, JudgeTask):
        return task
    if task not in JUDGE_TASKS:
        raise UsageError(f"--task {task!r}: expected one of {', '.join(JUDGE_TASKS)}")
    return JUDGE_TASKS[task]


def check_task(task: str) -> str:
    return judge_task(task).name


def placeholder_help() -> str:
    """One line per task naming its placeholders (shown in `--help` and the README)."""
    return "; ".join(f"{name}: " + " ".join(f"{{{n}}}" for n in task.placeholders) for name, task in JUDGE_TASKS.items())


def load_template(task: "str | JudgeTask", prompt_file: str | os.PathLike | None = None) -> PromptTemplate:
    """The default template for `task`, or the one in `prompt_file` after checking its placeholders.

    A `.yaml`/`.yml`/`.json` file holds ``system`` (optional) and ``user``; any other file is read
    whole as the user message. Every placeholder of the task must appear; an unknown ``{name}``
    is reported (it is almost always a typo such as ``{prediction}``).
    """
    spec = judge_task(task)
    if prompt_file is None:
        return spec.template
    template = read_template_file(Path(prompt_file))
    used = placeholders_in(template)
    problems = [f"missing placeholder {{{name}}}" for name in spec.placeholders if name not in used]
    problems += [f"unknown placeholder {{{name}}}" for name in sorted(used - set(spec.placeholders))]
    if problems:
        raise UsageError(
            f"{prompt_file}: {'; '.join(problems)} (task {spec.name})",
            hint=f"placeholders for {spec.name}: " + " ".join(f"{{{n}}}" for n in spec.placeholders),
        )
    return template


# Views of the list for callers that want plain names.
TASKS = tuple(JUDGE_TASKS)
DIMENSIONS = tuple(name for name, task in JUDGE_TASKS.items() if not task.yes_no)
PLACEHOLDERS: dict[str, tuple[str, ...]] = {name: task.placeholders for name, task in JUDGE_TASKS.items()}
DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {name: task.template for name, task in JUDGE_TASKS.items()}
