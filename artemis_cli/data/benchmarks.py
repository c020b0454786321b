"""The benchmarks: one `BenchmarkSpec` per benchmark in one registry, `BENCHMARKS`.

A spec says how the benchmark's records are read and validated (its reader and record formats), how
samples and their ids are made, the prediction record `artemis infer` writes (`PREDICTIONS`, the
output fields in order), which `artemis judge gpt` tasks apply, and which files of the bundled sample
the demo runs it on. `artemis infer` (its `--dataset` / `--set` choices), `data verify-layout`,
`judge`, `score` and the demo read the registry, so a new QA set in the standard question/answer
format is one `qa_benchmark(...)` entry.

Id rules (stable across runs, shards and resumes), in this module only:
- VideoRefBench: the record's `video_name` (a repeat gets ``#k``, k counting earlier repeats);
- video QA: the question's `question_id` (must be unique, as `artemis judge gpt` requires);
- Video-ChatGPT: ``<video_name>_<k>``, k counting earlier records of the same video (`numbered_id`,
  the published judge scripts' ids; `judge` numbers lines that carry no `id` the same way).
A record that fails validation still becomes a sample (with `problem` set), so `infer` reports it in
its errors file instead of stopping the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from pydantic import ValidationError

from artemis_cli.common.jsonio import load_json
from artemis_cli.common.media import FEATURE_SUFFIXES
from artemis_cli.common.validation import validation_problems
from artemis_cli.data.layout import ARTEMIS_DATA
from artemis_cli.data.records import RECORD_FORMATS, QAAnswer, QAQuestion, ReferringRecord, referring_rules
from artemis_cli.errors import InputError, UsageError


@dataclass(frozen=True)
class PredictionSchema:
    """One kind of prediction line: its keys in output order, the ones the model fills, and their roles.

    `roles` maps what a consumer needs to the key that holds it: the judge's placeholders
    (``question``, ``answer``, ``pred``, ``question1``...), the scorer's ``reference`` and ``pred``,
    and ``video`` (the key the ``<video>_<k>`` rule and the caption protocol group by)."""

    name: str
    fields: tuple[str, ...]
    pred_fields: tuple[str, ...]
    roles: Mapping[str, str]

    def example(self) -> str:
        """A one-line example of the line, for hints: ``{"id": ..., "question": ..., ...}``."""
        return "{" + ", ".join(f'"{key}": ...' for key in self.fields if key != "id" or self.name == "qa") + "}"


PREDICTIONS: dict[str, PredictionSchema] = {
    "caption": PredictionSchema("caption", ("video_name", "groundtruth", "pred", "id"), ("pred",),
                                {"video": "video_name", "reference": "groundtruth", "pred": "pred"}),
    "qa": PredictionSchema("qa", ("id", "question", "answer", "pred"), ("pred",),
                           {"question": "question", "answer": "answer", "pred": "pred"}),
    "vcg": PredictionSchema("vcg", ("video_name", "Q", "A", "pred", "id"), ("pred",),
                            {"video": "video_name", "question": "Q", "answer": "A", "pred": "pred"}),
    "consistency": PredictionSchema("consistency", ("video_name", "Q1", "Q2", "A", "pred1", "pred2", "id"),
                                    ("pred1", "pred2"),
                                    {"video": "video_name", "question1": "Q1", "question2": "Q2", "answer": "A",
                                     "pred1": "pred1", "pred2": "pred2"}),
}


@dataclass
class BenchmarkSample:
    """One benchmark item: its id, the output fields known up front, one question per prediction field."""

    id: str
    fields: dict[str, Any]
    order: tuple[str, ...]
    questions: tuple[str, ...] = ()
    pred_fields: tuple[str, ...] = ("pred",)
    feature: Optional[Path] = None
    referring: Any = None  # a ReferringRecord for VideoRefBench
    root: Optional[Path] = None  # what its clip_path / frame_path are relative to
    problem: Optional[str] = None

    def result(self, preds: list[str]) -> dict[str, Any]:
        values = {**self.fields, "id": self.id, **dict(zip(self.pred_fields, preds))}
        return {key: values[key] for key in self.order}


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: what `artemis infer <command>` reads for it and what it writes.

    `read(benchmark=spec, **inputs)` returns its samples in input order; `inputs` are the
    command's input paths (``annotations``/``data_root``, ``questions``/``answers``/``features``
    or ``annotations``/``features``). `demo_inputs` name the bundled sample's annotation files
    (relative to its ``annotations`` folder) when the demo runs this benchmark."""

    name: str
    command: str  # `artemis infer <command>`: videorefbench | qa | vcgbench
    title: str
    prediction: PredictionSchema
    read: Callable[..., list[BenchmarkSample]]
    inputs: tuple[str, ...]  # the input paths `read` takes (and `artemis infer <command>` asks for)
    formats: tuple[str, ...]  # record formats of its annotation files (`data.records.RECORD_FORMATS`)
    judge_tasks: tuple[str, ...] = ()
    feature_prefix: str = ""  # feature files are named <prefix><video_name>
    needs_roi: bool = False  # answered through the RoI module (a stage-3 model)
    output_stem: str = ""  # the prediction file's usual name (preds/<stem>.jsonl)
    demo_inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How progress bars name a run: the command, plus the dataset for QA."""
        return f"qa {self.name}" if self.command == "qa" else self.command

    @property
    def selector(self) -> Optional[tuple[str, str]]:
        """(`artemis infer` option, value) that picks this benchmark within its command, if any."""
        option = SELECTORS.get(self.command)
        return (option, self.name) if option else None

    def task(self, **inputs: Any) -> dict[str, Any]:
        """The `artemis infer` task of this benchmark over `inputs` (an `InferConfig.task`)."""
        selector = {SELECTOR_FIELDS[self.command]: self.name} if self.command in SELECTOR_FIELDS else {}
        return {"kind": self.command, **selector, **{name: inputs[name] for name in self.inputs}}


# The option (and task field) of `artemis infer <command>` that names the benchmark, where a command has several.
SELECTORS = {"qa": "--dataset", "vcgbench": "--subset"}
SELECTOR_FIELDS = {"qa": "dataset", "vcgbench": "set"}


def number_repeats(base: str, seen: dict[str, int]) -> str:
    """VideoRefBench ids: `base` the first time, then ``base#1``, ``base#2``..."""
    k = seen.get(base, 0)
    seen[base] = k + 1
    return base if k == 0 else f"{base}#{k}"


def numbered_id(base: str, seen: dict[str, int]) -> str:
    """Video-ChatGPT ids: ``<base>_<k>``, k counting earlier records of the same video (0 first)."""
    k = seen.get(base, 0)
    seen[base] = k + 1
    return f"{base}_{k}"


def _records(path: Path, what: str) -> list:
    data = load_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of {what}, got a JSON {type(data).__name__}")
    return data


def _validate(model, raw: Any, where: str) -> tuple[Any, Optional[str]]:
    if not isinstance(raw, dict):
        return None, f"{where}: expected an object, got {type(raw).__name__}"
    try:
        return model.model_validate(raw), None
    except ValidationError as exc:
        return None, f"{where}: " + "; ".join(validation_problems(exc, root="(record)"))


def feature_file(folder: Path, name: str) -> Path:
    """`folder/name.pkl`, or its twin with another feature suffix when only that exists."""
    for suffix in FEATURE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{name}.pkl"


def spec_of(benchmark: "str | BenchmarkSpec", command: Optional[str] = None) -> BenchmarkSpec:
    """The registered spec named `benchmark` (of `command` when given), or `benchmark` itself."""
    if isinstance(benchmark, BenchmarkSpec):
        return benchmark
    spec = BENCHMARKS.get(benchmark)
    if spec is None or (command is not None and spec.command != command):
        raise UsageError(f"unknown benchmark {benchmark!r}: expected one of {', '.join(names(command))}")
    return spec


def names(command: Optional[str] = None) -> list[str]:
    """Registered benchmark names, of one `artemis infer` command when given, in registry order."""
    return [name for name, spec in BENCHMARKS.items() if command is None or spec.command == command]


def videorefbench_samples(annotations: Path, data_root: Path,
                          benchmark: "str | BenchmarkSpec" = "videorefbench") -> list[BenchmarkSample]:
    """Referring records (HC-STVG val) -> samples; output fields video_name, groundtruth, pred, id."""
    spec = spec_of(benchmark)
    # clip_path / frame_path are relative to DATA_ROOT/Artemis_data; the published scripts' --video_dir
    # pointed at that folder itself, so accept either.
    root = data_root / ARTEMIS_DATA if (data_root / ARTEMIS_DATA).is_dir() else data_root
    samples, seen = [], {}
    for index, raw in enumerate(_records(annotations, "referring records")):
        record, problem = _validate(ReferringRecord, raw, f"{annotations}[{index}]")
        if record is not None:
            rules = referring_rules(record)
            if record.video_name is None:
                rules.append(("video_name", "missing (VideoRefBench records are keyed by it)"))
            if rules:
                problem = f"{annotations}[{index}]: " + "; ".join(f"{f}: {m}" for f, m in rules)
        name = raw.get("video_name") if isinstance(raw, dict) else None
        sample_id = number_repeats(str(name), seen) if name is not None else f"#{index}"
        fields = {"video_name": name, "groundtruth": raw.get("caption") if isinstance(raw, dict) else None}
        samples.append(BenchmarkSample(id=sample_id, fields=fields, order=spec.prediction.fields, referring=record,
                                       root=root, problem=problem))
    return samples


def qa_samples(benchmark: "str | BenchmarkSpec", questions: Path, answers: Path,
               features: Path) -> list[BenchmarkSample]:
    """Video-QA question + answer files (aligned by position) -> samples; features are named
    ``<feature_prefix><video_name>`` (ActivityNet: ``v_``). Output fields id, question, answer, pred."""
    spec = spec_of(benchmark, "qa")
    q_records = _records(questions, "questions")
    a_records = _records(answers, "answers")
    if len(q_records) != len(a_records):
        raise InputError(f"{questions} has {len(q_records)} questions but {answers} has {len(a_records)} answers",
                         hint="the two files are aligned by position, as in the published scripts")
    samples, first = [], {}
    duplicates = []
    for index, (q_raw, a_raw) in enumerate(zip(q_records, a_records)):
        question, problem = _validate(QAQuestion, q_raw, f"{questions}[{index}]")
        answer, a_problem = _validate(QAAnswer, a_raw, f"{answers}[{index}]")
        problem = problem or a_problem
        raw_id = q_raw.get("question_id") if isinstance(q_raw, dict) else None
        sample_id = str(raw_id) if raw_id is not None else f"#{index}"
        if sample_id in first:
            duplicates.append(f"{sample_id!r} at {first[sample_id]} and {index}")
        first.setdefault(sample_id, index)
        text = question.question if question is not None else None
        fields = {"question": text, "answer": answer.answer if answer is not None else None}
        feature = feature_file(features, f"{spec.feature_prefix}{question.video_name}") if question is not None else None
        samples.append(BenchmarkSample(id=sample_id, fields=fields, order=spec.prediction.fields,
                                       questions=(text,) if text else (), feature=feature, problem=problem))
    if duplicates:
        raise InputError(f"{questions}: {len(duplicates)} duplicate question_id(s): {', '.join(duplicates[:10])}",
                         hint="ids must be unique: outputs are resumed, merged and judged by id")
    return samples


def vcgbench_samples(benchmark: "str | BenchmarkSpec", annotations: Path, features: Path) -> list[BenchmarkSample]:
    """Video-ChatGPT benchmark records -> samples; the questions are the schema's question roles
    (consistency asks Q1 and Q2 and fills pred1, pred2)."""
    spec = spec_of(benchmark, "vcgbench")
    schema = spec.prediction
    model = RECORD_FORMATS[spec.formats[0]].model
    question_keys = tuple(schema.roles[role] for role in ("question", "question1", "question2") if role in schema.roles)
    keys = tuple(key for key in schema.fields if key not in schema.pred_fields and key != "id")
    samples, seen = [], {}
    for index, raw in enumerate(_records(annotations, "Video-ChatGPT records")):
        record, problem = _validate(model, raw, f"{annotations}[{index}]")
        name = raw.get("video_name") if isinstance(raw, dict) else None
        sample_id = numbered_id(str(name), seen) if name is not None else f"#{index}"
        fields = {key: raw.get(key) for key in keys} if isinstance(raw, dict) else dict.fromkeys(keys)
        questions = tuple(getattr(record, key) for key in question_keys) if record is not None else ()
        samples.append(BenchmarkSample(id=sample_id, fields=fields, order=schema.fields, questions=questions,
                                       pred_fields=schema.pred_fields,
                                       feature=feature_file(features, f"{spec.feature_prefix}{name}")
                                       if record is not None else None, problem=problem))
    return samples


def qa_benchmark(name: str, title: str, *, feature_prefix: str = "", **extra: Any) -> BenchmarkSpec:
    """A zero-shot video-QA set in the standard format: a question file ``{video_name, question,
    question_id}`` and an answer file ``{answer}`` aligned by position; judged with ``--task qa``."""
    return BenchmarkSpec(name=name, command="qa", title=title, prediction=PREDICTIONS["qa"], read=qa_samples,
                         inputs=("questions", "answers", "features"), formats=("qa_questions", "qa_answers"), judge_tasks=("qa",), feature_prefix=feature_prefix,
                         output_stem=f"{name}_qa", **extra)


def vcg_benchmark(name: str, title: str, judge_tasks: tuple[str, ...], *, consistency: bool = False,
                  **extra: Any) -> BenchmarkSpec:
    """A Video-ChatGPT question set: ``{video_name, Q, A}`` records (consistency: Q1, Q2)."""
    return BenchmarkSpec(name=name, command="vcgbench", title=title,
                         prediction=PREDICTIONS["consistency" if consistency else "vcg"], read=vcgbench_samples,
                         inputs=("annotations", "features"),
                         formats=("vcg_consistency" if consistency else "vcg",), judge_tasks=judge_tasks,
                         output_stem=f"vcgbench_{name}", **extra)


BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("videorefbench", "videorefbench", "VideoRefBench",
                  PREDICTIONS["caption"], videorefbench_samples, ("annotations", "data_root"), formats=("referring",),
                  needs_roi=True,
                  output_stem="videorefbench", demo_inputs={"annotations": "videorefbench/hc_stvg_val.json"}),
    qa_benchmark("msvd", "MSVD-QA", demo_inputs={"questions": "msvd_qa/test_q.json", "answers": "msvd_qa/test_a.json"}),
    qa_benchmark("msrvtt", "MSRVTT-QA"),
    qa_benchmark("activitynet", "ActivityNet-QA", feature_prefix="v_"),
    qa_benchmark("tgif", "TGIF-QA"),
    vcg_benchmark("generic", "Video-ChatGPT generic questions", ("correctness", "detail", "context"),
                  demo_inputs={"annotations": "vcgbench/generic_qa.json"}),
    vcg_benchmark("temporal", "Video-ChatGPT temporal questions", ("temporal",),
                  demo_inputs={"annotations": "vcgbench/temporal_qa.json"}),
    vcg_benchmark("consistency", "Video-ChatGPT consistency questions", ("consistency",),
                  consistency=True, demo_inputs={"annotations": "vcgbench/consistency_qa.json"}),
)}
