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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from pydantic import ValidationError

from artemis_cli.common.jsonio import load_json
from artemis_cli.common.validation import validation_problems
from artemis_cli.data.frames import VIDEO_SUFFIXES
from artemis_cli.data.layout import ARTEMIS_DATA
from artemis_cli.common.media import BBOX_TOKEN, FEATURE_SUFFIXES
from artemis_cli.data.records import (RECORD_FORMATS, QAAnswer, QAQuestion, RCapRecord, ReferringRecord,
                                      STCMetadataRecord, rcap_rules, referring_rules)
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
    # VideoRefer-Bench-D and PLM-VideoBench RCap: a description of one target, judged against the reference.
    "description": PredictionSchema("description", ("id", "video", "caption", "pred"), ("pred",),
                                    {"answer": "caption", "pred": "pred"}),
    # VideoRefer-Bench-Q: a multiple-choice answer, scored by its letter (`metrics.mcq`).
    # `scoring`: how the answer was made, generated or the most likely option (``answer_by``).
    "mcq": PredictionSchema("mcq", ("id", "video", "question", "options", "answer", "type", "n_regions", "scoring",
                                    "pred"), ("pred",), {"question": "question", "answer": "answer", "pred": "pred"}),
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
    video: Optional[Path] = None  # a peer benchmark's video (file or frame folder): its RoI frames come from it
    track_with: Optional[str] = None  # a tracker to propagate the key frame's box over the annotated frames
    choices: tuple[str, ...] = ()  # answer by the most likely of these (option log-likelihood), not by generating
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


def recorded_input_ids(predictions: Path) -> Optional[list[str]]:
    """The input ids an `artemis infer` run recorded in the manifest beside `predictions`
    (``<stem>.manifest.json``), or None when there is none: a sample that failed has an id there but no
    prediction line, and `judge`/`score` count it instead of dropping it silently."""
    stem = predictions.stem if predictions.suffix in (".jsonl", ".json") else predictions.name
    manifest = predictions.with_name(f"{stem}.manifest.json")
    if not manifest.is_file():
        return None
    data = load_json(manifest)
    ids = data.get("input_ids") if isinstance(data, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) else None


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


# ---- the peers' region benchmarks -------------------------------------------------------------------------
# A peer record becomes a `ReferringRecord` (the clip feature of its video, the annotated frames as the
# track list, the key frame and its box) plus the video its RoI frames are decoded from. Masks become
# their tight boxes (`data.masks.rle_box`); a frame whose mask is null or empty is an untracked `[]`.

MCQ_INSTRUCTION = ". Answer with the option's letter from the given choices directly."  # the published suffix
_OBJECT_REGION = re.compile(r"(?:<object(\d+)>)?<region>")
FrameModes = ("multi", "single")


def mcq_question(question: str, options: list[str]) -> tuple[str, int]:
    """The Bench-Q prompt for Artemis and how many regions it names: the question with its first
    ``<objectN><region>`` as Artemis' one ``<bbox>`` (the first annotated object is the RoI) and any
    further one as plain "object N" text, then the options and the published instruction."""
    count = [0]

    def mark(match: re.Match) -> str:
        count[0] += 1
        if count[0] == 1:
            return BBOX_TOKEN
        return f"object {match.group(1)}" if match.group(1) else "the other object"

    text = _OBJECT_REGION.sub(mark, question)
    return text + " " + " ".join(options) + MCQ_INSTRUCTION, count[0]


def _video_stem(video: str) -> str:
    """The feature name of a video: a file's name without its extension, a frame folder's name."""
    name = Path(video.rstrip("/")).name
    return Path(name).stem if Path(name).suffix.lower() in VIDEO_SUFFIXES else name


def _unique_ids(path: Path, ids: list[str]) -> None:
    first: dict[str, int] = {}
    duplicates = []
    for index, sample_id in enumerate(ids):
        if sample_id in first:
            duplicates.append(f"{sample_id!r} at {first[sample_id]} and {index}")
        first.setdefault(sample_id, index)
    if duplicates:
        raise InputError(f"{path}: {len(duplicates)} duplicate id(s): {', '.join(duplicates[:10])}",
                         hint="ids must be unique: outputs are resumed, merged and judged by id")


def _region_sample(spec: BenchmarkSpec, sample_id: str, fields: dict[str, Any], *, video: Path, features: Path,
                   frame_ids: list[int], track: list[list[float]], key_frame: Optional[int], key_box: list[float],
                   question: Optional[str], track_with: Optional[str] = None) -> BenchmarkSample:
    feature = feature_file(features, _video_stem(str(video)))
    record = ReferringRecord(clip_path=feature.name, caption="", question=question, frame_path="",
                             frame_id=frame_ids, track_list=track, video_name=_video_stem(str(video)),
                             key_frame_id=key_frame if key_box else None, key_frame_box=key_box or None)
    problems = referring_rules(record)
    return BenchmarkSample(id=sample_id, fields=fields, order=spec.prediction.fields, referring=record,
                           root=feature.parent, video=video, track_with=track_with,
                           problem="; ".join(f"{f}: {m}" for f, m in problems) or None)


def _failed(spec: BenchmarkSpec, sample_id: str, fields: dict[str, Any], problem: str) -> BenchmarkSample:
    return BenchmarkSample(id=sample_id, fields=fields, order=spec.prediction.fields, problem=problem)


def _object_track(frames: dict[str, Any], key: str, mode: str, where: str) -> tuple[list[int], list, list[float]]:
    """(frame indices, boxes, key frame box) of one masked object over its annotated frames; single-frame
    mode keeps only the key frame's box (the others are left untracked, `[]`, for a tracker to fill)."""
    from artemis_cli.data.masks import rle_box

    names = sorted(frames, key=int)
    boxes = [rle_box(frames[name].segmentation.model_dump() if frames[name].segmentation else None,
                     f"{where}.{name}.segmentation") if mode == "multi" or name == key else [] for name in names]
    return [int(name) for name in names], boxes, boxes[names.index(key)] if key in names else []


def videorefer_samples(benchmark: "str | BenchmarkSpec", annotations: Path, videos: Path, features: Path,
                       frame_mode: str = "multi", tracker: Optional[str] = None,
                       question: Optional[str] = None, answer_by: str = "generate") -> list[BenchmarkSample]:
    """VideoRefer-Bench-D / -Q records -> samples. `frame_mode` ``multi`` gives Artemis every annotated
    frame's box (the masks' boxes); ``single`` only the `frame_idx` frame's, tracked over the annotated
    frames with `tracker` when given. Bench-Q's RoI is its first annotated object (see `mcq_question`);
    its answer is generated, or with `answer_by` ``loglikelihood`` the most likely option.
    Ids: the record's `id`, else its position ``#k``."""
    spec = spec_of(benchmark)
    is_mcq = spec.prediction.name == "mcq"
    model = RECORD_FORMATS[spec.formats[0]]
    raw_records = _records(annotations, f"{spec.title} records")
    ids = [str(raw["id"]) if isinstance(raw, dict) and raw.get("id") is not None else f"#{index}"
           for index, raw in enumerate(raw_records)]
    _unique_ids(annotations, ids)
    samples = []
    for index, (raw, sample_id) in enumerate(zip(raw_records, ids)):
        where = f"{annotations}[{index}]"
        record, problem = _validate(model.model, raw, where)
        if record is not None and not problem:
            rules = model.rules(record)
            problem = f"{where}: " + "; ".join(f"{f}: {m}" for f, m in rules) if rules else None
        get = raw.get if isinstance(raw, dict) else (lambda key: None)
        if is_mcq:
            text, regions = mcq_question(get("Question") or "", list(get("options") or [])) if record else (None, 0)
            fields = {"video": get("video"), "question": get("Question"), "options": get("options"),
                      "answer": get("Answer"), "type": get("type"), "n_regions": regions, "scoring": answer_by}
        else:
            text, fields = question, {"video": get("video"), "caption": get("caption")}
        if problem:
            samples.append(_failed(spec, sample_id, fields, problem))
            continue
        try:
            frame_ids, track, key_box = _object_track(record.annotation[0], str(record.frame_idx), frame_mode,
                                                      f"{where}.annotation[0]")
        except InputError as exc:
            samples.append(_failed(spec, sample_id, fields, exc.message))
            continue
        sample = _region_sample(spec, sample_id, fields, video=videos / record.video, features=features,
                                frame_ids=frame_ids, track=track, key_frame=int(record.frame_idx), key_box=key_box,
                                question=question if not is_mcq else text,
                                track_with=tracker if frame_mode == "single" else None)
        if is_mcq and answer_by == "loglikelihood":
            sample.choices = tuple(record.options)
        samples.append(sample)
    return samples


def rcap_samples(benchmark: "str | BenchmarkSpec", annotations: Path, metadata: Path, videos: Path,
                 features: Path, question: Optional[str] = None) -> list[BenchmarkSample]:
    """PLM-VideoBench RCap items + metadata -> samples: the masklet's per-frame boxes within [start_frame,
    end_frame] are the track list (frames without a box are untracked), the first boxed frame is the key
    frame. Both files may be a JSON list or JSON Lines (the published metadata is ``metadata_test.jsonl``)."""
    from artemis_cli.common.jsonio import load_records

    spec = spec_of(benchmark)
    by_masklet: dict[tuple[str, str], Any] = {}
    for line, raw in load_records(metadata):
        record, problem = _validate(STCMetadataRecord, raw, f"{metadata}:{line}")
        if problem:
            raise InputError(problem, hint="the metadata is PLM-VideoBench's metadata/metadata_test.jsonl")
        by_masklet[(record.video, str(record.masklet_id))] = record
    items = load_records(annotations)
    ids = [str(raw["uid"]) if isinstance(raw, dict) and raw.get("uid") is not None else f"#{n}" for n, raw in items]
    _unique_ids(annotations, ids)
    samples = []
    for (line, raw), sample_id in zip(items, ids):
        where = f"{annotations}:{line}"
        record, problem = _validate(RCapRecord, raw, where)
        if record is not None and not problem:
            rules = rcap_rules(record)
            problem = f"{where}: " + "; ".join(f"{f}: {m}" for f, m in rules) if rules else None
        fields = {"video": raw.get("video"), "caption": raw.get("caption")} if isinstance(raw, dict) else {}
        meta = by_masklet.get((record.video, str(record.masklet_id))) if record is not None else None
        if not problem and meta is None:
            problem = f"{where}: no metadata line for video {record.video!r}, masklet_id {record.masklet_id!r} in {metadata}"
        if problem:
            samples.append(_failed(spec, sample_id, fields, problem))
            continue
        boxes = {int(name): box for name, box in meta.bbox.items() if name.isdigit() and box}
        frame_ids = list(range(record.start_frame, record.end_frame + 1))
        track = [list(boxes.get(frame, [])) for frame in frame_ids]
        key = next((frame for frame in frame_ids if frame in boxes), None)
        if key is None:
            samples.append(_failed(spec, sample_id, fields, f"{where}: the masklet has no box within frames "
                                                            f"[{record.start_frame}, {record.end_frame}]"))
            continue
        samples.append(_region_sample(spec, sample_id, fields, video=videos / record.video, features=features,
                                      frame_ids=frame_ids, track=track, key_frame=key, key_box=list(boxes[key]),
                                      question=question))
    return samples


def region_benchmark(name: str, title: str, read: Callable[..., list[BenchmarkSample]], prediction: str,
                     formats: tuple[str, ...], options: tuple[str, ...], **extra: Any) -> BenchmarkSpec:
    """A peer benchmark answered through the RoI path: `artemis infer <name>` over the records, their videos
    (`--videos`) and the videos' clip features (`--features`, from `artemis features extract`)."""
    inputs = ("annotations", "metadata", "videos", "features") if "plm_metadata" in formats else \
        ("annotations", "videos", "features")
    return BenchmarkSpec(name=name, command=name, title=title, prediction=PREDICTIONS[prediction], read=read,
                         inputs=inputs + options, formats=formats, needs_roi=True,
                         output_stem=name.replace("-", "_"), **extra)


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
    region_benchmark("videorefer-d", "VideoRefer-Bench-D", videorefer_samples, "description", ("videorefer_d",),
                     ("frame_mode", "tracker", "question"), judge_tasks=("videorefer-d",)),
    region_benchmark("videorefer-q", "VideoRefer-Bench-Q", videorefer_samples, "mcq", ("videorefer_q",),
                     ("frame_mode", "tracker", "answer_by")),
    region_benchmark("plm-rcap", "PLM-VideoBench RCap", rcap_samples, "description", ("plm_rcap", "plm_metadata"),
                     ("question",), judge_tasks=("plm-rcap",)),
)}
