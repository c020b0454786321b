"""The judge tasks: one `JudgeTask` per task in one list, `JUDGE_TASKS`.

A task names the prediction record it reads (`data.benchmarks.PREDICTIONS`: its roles are the
prompt's placeholders), its default prompt (for the Artemis paper's tasks the published rubric in our
own words, asking for a JSON object; for the peers' benchmarks their published prompt as it is), its
reply schema (a 0-5 ``score``, with a yes/no ``pred`` for QA; 0-10 for RCap; four dimension lines for
VideoRefer-Bench-D) and so its aggregation (the mean score, per dimension, and for a yes/no task the
accuracy), and its request parameters. `judge gpt --task`, the prompt
checks, the reply parser, the summary and the demo all read this list, so a new task is one entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from artemis_cli.data.benchmarks import PREDICTIONS, PredictionSchema
from artemis_cli.errors import UsageError
from artemis_cli.judge.prompts import PromptTemplate, placeholders_in, read_template_file


@dataclass(frozen=True)
class JudgeTask:
    """One judge task: what it reads, what it asks, what a reply must hold and how replies add up.

    `reply` is ``json`` (a JSON object with a ``score`` in 0..`score_max`, and ``pred`` yes/no for a
    `yes_no` task) or ``dimensions`` (numbered ``N. <dimension>: <score>`` lines, one per `dimensions`
    entry, the VideoRefer-Bench-D format; the item's score is their mean). `temperature`, `top_p` and
    `max_tokens` are the protocol's request parameters (None: the server's default), recorded with
    every run."""

    name: str
    prediction: PredictionSchema
    template: PromptTemplate
    yes_no: bool = False  # the reply also says "pred": yes/no, and the summary gives the accuracy
    completion_tokens: int = 6  # a reply's size, for --dry-run estimates ('{"score": 4}')
    about: str = ""
    reply: str = "json"
    score_max: int = 5
    dimensions: tuple[str, ...] = ()
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    protocol: str = ""  # where the prompt and the parameters come from

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


# VideoRefer-Bench-D's published judge prompt (DAMO-NLP-SG/VideoRefer videorefer/eval/videorefer_bench_d/
# system.txt), kept as published, literal "\\n" in the format example included, so scores stay comparable.
BENCH_D_DIMENSIONS = ("Subject Correspondence", "Appearance Description", "Temporal Description",
                      "Hallucination Detection")
_BENCH_D = PromptTemplate(
    system=(
        "You are an advanced intelligent chatbot specialized in evaluating the factual accuracy of generative "
        "outputs related to object-based video descriptions.\n"
        "Your primary task is to meticulously compare the predicted answer with the correct answer and assess "
        "their factual consistency. To accomplish this, you will evaluate the descriptions across four key "
        "dimensions:\n"
        "1. Subject Correspondence: Assess whether the subject of the input description accurately matches the "
        "subject indicated in the ground truth description.\n"
        "2. Appearance Description: Evaluate the accuracy of the appearance details, including color, shape, "
        "size, texture, and any other relevant visual attributes.\n"
        "3. Temporal Description: Analyze whether the depiction of the object's motion aligns with the actual "
        "movements described in the correct answer.\n"
        "4. Hallucination Detection: Identify any discrepancies by determining if the description includes "
        "facts, actions, or elements that do not exist in reality, such as imaginative interpretations or "
        "incorrect inferences.\n"
        "Please assign a score for each of these four dimensions, using an integer from 0 to 5, where 5 "
        "indicates a perfect match and 0 signifies no relevance at all. Accompany your assessments with brief "
        "explanations to clarify your scoring rationale.\n"
        "### OUTPUT FORMAT(EXAMPLE)\n"
        "1. Subject Correspondence: 5\\nExplanation: xxx\n"
        "2. Appearance Description: 4\\nExplanation: xxx\n"
        "3. Temporal Description: 5\\nExplanation: xxx\n"
        "4. Hallucination Detection: 3\\nExplanation: xxx"
    ),
    user="##Correct answer: {answer}\n##Predicted answer: {pred}\n",
)

# PLM-VideoBench RCap's published caption judge (lmms-eval plm_videobench/eval_utils.py get_caption_judge_prompt).
_RCAP = PromptTemplate(
    system=(
        "Your task is to score a predicted caption from a model for how similar it is to the ground truth caption, "
        "providing a single integer score between 0-10 indicating the similarity and an explanation. "
        "Focus on whether the information in the ground truth caption is present and accurately represented in "
        "the predicted caption. "
        "A score of 10 indicates that the predicted caption accurately represents all the information present in "
        "the ground truth caption. "
        "Subtract points for missing and inaccurate information, with lower scores for more significant errors. "
        "Do not penalize extra information in the predicted caption unless it contradicts the ground truth caption. "
        "Do not penalize minor differences in phrasing or word choice. "
        'Respond in the following JSON format: {"score": <int>, "explanation": "<str>"} '
        "where score is between 0-10 and explanation is a short sentence."
    ),
    user="Please score the following predicted caption. Respond with only the JSON.\nPredicted caption: {pred}\n"
         "Ground truth caption: {answer}\n\n",
)


JUDGE_TASKS: dict[str, JudgeTask] = {task.name: task for task in (
    JudgeTask("qa", PREDICTIONS["qa"], _QA, yes_no=True, completion_tokens=14,
              about="yes/no + score 0-5: accuracy and mean score"),
    JudgeTask("correctness", PREDICTIONS["vcg"], _CORRECTNESS, about="correctness of information, 0-5"),
    JudgeTask("detail", PREDICTIONS["vcg"], _DETAIL, about="detail orientation, 0-5"),
    JudgeTask("context", PREDICTIONS["vcg"], _CONTEXT, about="contextual understanding, 0-5"),
    JudgeTask("temporal", PREDICTIONS["vcg"], _TEMPORAL, about="temporal understanding, 0-5"),
    JudgeTask("consistency", PREDICTIONS["consistency"], _CONSISTENCY, about="consistency of two answers, 0-5"),
    JudgeTask("videorefer-d", PREDICTIONS["description"], _BENCH_D, reply="dimensions", dimensions=BENCH_D_DIMENSIONS,
              temperature=0.7, top_p=0.95, max_tokens=800, completion_tokens=160,
              about="VideoRefer-Bench-D: four dimensions 0-5 (SC/AD/TD/HD) and their mean",
              protocol="VideoRefer's published system prompt and sampling (temperature 0.7, top_p 0.95); the "
                       "published scripts used GPT-4o (gpt-4o-2024-08-06)"),
    JudgeTask("plm-rcap", PREDICTIONS["description"], _RCAP, score_max=10, temperature=0.0, max_tokens=256,
              completion_tokens=40, about="PLM-VideoBench RCap: similarity 0-10 (reported /10)",
              protocol="lmms-eval's plm_videobench caption judge (temperature 0, max_tokens 256); the published "
                       "judge is Llama-3.3-70B-Instruct behind an OpenAI-compatible URL"),
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
DIMENSIONS = tuple(name for name, task in JUDGE_TASKS.items() if task.prediction.name in ("vcg", "consistency"))
PLACEHOLDERS: dict[str, tuple[str, ...]] = {name: task.placeholders for name, task in JUDGE_TASKS.items()}
DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {name: task.template for name, task in JUDGE_TASKS.items()}
