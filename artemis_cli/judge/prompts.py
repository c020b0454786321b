"""Judge prompts: the rubric of REFERENCE §7 in our own words, asking for a JSON object.

A template is a system message (optional) and a user message. Placeholders are ``{name}`` with
the names of `PLACEHOLDERS` for the task; any other brace text (a JSON example such as
``{"score": 4}``) is left as it is, so the published prompt text can be pasted into a
``--prompt-file`` unchanged. Substitution is a single pass, so a prediction that itself contains
``{answer}`` is never expanded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from artemis_cli.errors import UsageError

TASKS = ("qa", "correctness", "detail", "context", "temporal", "consistency")
DIMENSIONS = TASKS[1:]

# Placeholders each task's template must use (all of them), in the order they are documented.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "qa": ("question", "answer", "pred"),
    "correctness": ("question", "answer", "pred"),
    "detail": ("question", "answer", "pred"),
    "context": ("question", "answer", "pred"),
    "temporal": ("question", "answer", "pred"),
    "consistency": ("question1", "question2", "answer", "pred1", "pred2"),
}
_ALL_NAMES = sorted({name for names in PLACEHOLDERS.values() for name in names})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PromptTemplate(BaseModel):
    """What a ``--prompt-file`` holds (YAML/JSON keys `system`, `user`; a .txt file is the user text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str = ""
    user: str

    def render(self, fields: dict[str, str]) -> list[dict[str, str]]:
        """Chat messages for one item; `fields` maps placeholder names to the item's text."""

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), m.group(0)), text)

        messages = [{"role": "system", "content": fill(self.system)}] if self.system else []
        messages.append({"role": "user", "content": fill(self.user)})
        return messages

    def hash(self) -> str:
        """A stable hash of the template text (part of every cache key)."""
        canonical = json.dumps({"system": self.system, "user": self.user}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


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


DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {
    "qa": _QA,
    "correctness": _dimension("correctness of information", (
        "- Every fact the prediction states must agree with the correct answer.\n"
        "- Contradictions and invented details lower the score; paraphrases are fine."
    )),
    "detail": _dimension("detail orientation", (
        "- Completeness: does the prediction cover all the main points of the correct answer?\n"
        "- Specificity: does it give concrete details tied to this video rather than generic statements?\n"
        "- Paraphrases are fine; score both aspects together."
    )),
    "context": _dimension("contextual understanding", (
        "- Does the prediction fit the overall context of the video as the correct answer describes it?\n"
        "- Statements that are out of place or miss the broader situation lower the score."
    )),
    "temporal": _dimension("temporal understanding", (
        "- Does the prediction get the order, timing and succession of events right?\n"
        "- Events in the wrong order or at the wrong time lower the score; paraphrases are fine."
    )),
    "consistency": PromptTemplate(
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
    ),
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    return task


def placeholder_help() -> str:
    """One line per task naming its placeholders (shown in `--help` and the README)."""
    return "; ".join(f"{task}: " + " ".join(f"{{{n}}}" for n in names) for task, names in PLACEHOLDERS.items())


def load_template(task: str, prompt_file: str | os.PathLike | None = None) -> PromptTemplate:
    """The default template for `task`, or the one in `prompt_file` after checking its placeholders.

    A `.yaml`/`.yml`/`.json` file holds ``system`` (optional) and ``user``; any other file is read
    whole as the user message. Every placeholder of the task must appear; an unknown ``{name}``
    is reported (it is almost always a typo such as ``{prediction}``).
    """
    check_task(task)
    if prompt_file is None:
        return DEFAULT_TEMPLATES[task]
    template = _read_template_file(Path(prompt_file))
    text = template.system + "\n" + template.user
    used = set(_PLACEHOLDER.findall(text))
    problems = [f"missing placeholder {{{name}}}" for name in PLACEHOLDERS[task] if name not in used]
    problems += [f"unknown placeholder {{{name}}}" for name in sorted(used - set(PLACEHOLDERS[task]))]
    if problems:
        raise UsageError(
            f"{prompt_file}: {'; '.join(problems)} (task {task})",
            hint=f"placeholders for {task}: " + " ".join(f"{{{n}}}" for n in PLACEHOLDERS[task]),
        )
    return template


def _read_template_file(path: Path) -> PromptTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: prompt file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the prompt file ({type(exc).__name__})") from None
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        if not text.strip():
            raise UsageError(f"{path}: prompt file is empty")
        return PromptTemplate(user=text)
    import yaml

    try:
        data = yaml.safe_load(text)  # JSON is a subset of YAML
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML/JSON: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with keys 'system' (optional) and 'user'")
    try:
        return PromptTemplate.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise UsageError(f"{path}: " + "; ".join(lines)) from None


def template_as_yaml(template: PromptTemplate) -> str:
    """The template as a YAML `--prompt-file` (literal blocks), for `artemis judge show-prompt`."""
    import yaml

    class _Literal(str):
        pass

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))
    data = {"system": _Literal(template.system), "user": _Literal(template.user)}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
