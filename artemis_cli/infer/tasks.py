"""The three benchmarks as lists of samples: records -> ids, prompts, output fields (REFERENCE §2, §4-5).

Id conventions (stable across runs, shards and resumes):
- VideoRefBench: the record's `video_name` (a repeat gets ``#k``, k counting earlier repeats);
- video QA: the question's `question_id` (must be unique, as `artemis judge gpt` requires);
- Video-ChatGPT: ``<video_name>_<k>``, k counting earlier records of the same video (the judge's ids).
A record that fails validation still becomes a sample (with `problem` set), so it is reported in the
errors file instead of stopping the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ValidationError

from artemis_cli.errors import InputError

QADataset = Literal["msvd", "msrvtt", "activitynet", "tgif"]
VCGSet = Literal["generic", "temporal", "consistency"]
FEATURE_SUFFIXES = (".pkl", ".npy", ".safetensors")

ORDER = {
    "videorefbench": ("video_name", "groundtruth", "pred", "id"),
    "qa": ("id", "question", "answer", "pred"),
    "vcgbench": ("video_name", "Q", "A", "pred", "id"),
    "consistency": ("video_name", "Q1", "Q2", "A", "pred1", "pred2", "id"),
}


@dataclass
class Sample:
    """One input item: its id, the output fields known up front, one question per prediction field."""

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


def _records(path: Path, what: str) -> list:
    from artemis_cli.common.jsonio import load_json

    data = load_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of {what}, got a JSON {type(data).__name__}")
    return data


def _validate(model: type[BaseModel], raw: Any, where: str) -> tuple[Any, Optional[str]]:
    if not isinstance(raw, dict):
        return None, f"{where}: expected an object, got {type(raw).__name__}"
    try:
        return model.model_validate(raw), None
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(record)'}: {err['msg']}" for err in exc.errors()]
        return None, f"{where}: " + "; ".join(problems)


def _numbered(base: str, seen: dict[str, int], sep: str) -> str:
    k = seen.get(base, 0)
    seen[base] = k + 1
    return base if (k == 0 and sep == "#") else f"{base}{sep}{k}"


def feature_file(folder: Path, name: str) -> Path:
    """`folder/name.pkl`, or the `.npy`/`.safetensors` twin when only that exists."""
    for suffix in FEATURE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{name}.pkl"


def videorefbench_samples(annotations: Path, data_root: Path) -> list[Sample]:
    """VideoRefBench records (HC-STVG val) -> samples; output fields video_name, groundtruth, pred, id."""
    from artemis_cli.data.layout import ARTEMIS_DATA
    from artemis_cli.data.records import ReferringRecord, referring_rules

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
        sample_id = _numbered(str(name), seen, "#") if name is not None else f"#{index}"
        fields = {"video_name": name, "groundtruth": raw.get("caption") if isinstance(raw, dict) else None}
        samples.append(Sample(id=sample_id, fields=fields, order=ORDER["videorefbench"], referring=record, root=root,
                              problem=problem))
    return samples


def qa_samples(dataset: QADataset, questions: Path, answers: Path, features: Path) -> list[Sample]:
    """Video-QA question + answer files (aligned by position) -> samples; ActivityNet features are
    ``v_<video_name>``. Output fields id, question, answer, pred."""
    from artemis_cli.data.records import QAAnswer, QAQuestion

    q_records = _records(questions, "questions")
    a_records = _records(answers, "answers")
    if len(q_records) != len(a_records):
        raise InputError(f"{questions} has {len(q_records)} questions but {answers} has {len(a_records)} answers",
                         hint="the two files are aligned by position, as in the published scripts")
    prefix = "v_" if dataset == "activitynet" else ""
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
        feature = feature_file(features, f"{prefix}{question.video_name}") if question is not None else None
        samples.append(Sample(id=sample_id, fields=fields, order=ORDER["qa"], questions=(text,) if text else (),
                              feature=feature, problem=problem))
    if duplicates:
        raise InputError(f"{questions}: {len(duplicates)} duplicate question_id(s): {', '.join(duplicates[:10])}",
                         hint="ids must be unique: outputs are resumed, merged and judged by id")
    return samples


def vcgbench_samples(qset: VCGSet, annotations: Path, features: Path) -> list[Sample]:
    """Video-ChatGPT benchmark records -> samples (consistency asks Q1 and Q2: pred1, pred2)."""
    from artemis_cli.data.records import VCGConsistencyRecord, VCGRecord

    consistency = qset == "consistency"
    model = VCGConsistencyRecord if consistency else VCGRecord
    samples, seen = [], {}
    for index, raw in enumerate(_records(annotations, "Video-ChatGPT records")):
        record, problem = _validate(model, raw, f"{annotations}[{index}]")
        name = raw.get("video_name") if isinstance(raw, dict) else None
        sample_id = _numbered(str(name), seen, "_") if name is not None else f"#{index}"
        keys = ("video_name", "Q1", "Q2", "A") if consistency else ("video_name", "Q", "A")
        fields = {key: raw.get(key) for key in keys} if isinstance(raw, dict) else dict.fromkeys(keys)
        questions: tuple[str, ...] = ()
        if record is not None:
            questions = (record.Q1, record.Q2) if consistency else (record.Q,)
        samples.append(Sample(id=sample_id, fields=fields, order=ORDER["consistency" if consistency else "vcgbench"],
                              questions=questions, pred_fields=("pred1", "pred2") if consistency else ("pred",),
                              feature=feature_file(features, str(name)) if record is not None else None,
                              problem=problem))
    return samples


@dataclass
class PromptOptions:
    """How prompts are built: conversation template, RoI frames, the box-normalisation quirk."""

    template: str = "llava_v1"
    num_tracked: int = 8
    crop_correct: bool = False


def build_requests(sample: Sample, loaded, prompt: PromptOptions, seed: int) -> list:
    """Load a sample's inputs and build one `GenerationRequest` per question (raises `InputError`/`OSError`).

    A referring record goes through `model.inputs.referring_inputs` (as in training) (``train=False``: the published
    VideoRefBench prompt and frame choice), with the record's own question dropped, since the
    published benchmark always asks the fixed one; its random draws come from a generator seeded by
    the run seed and the sample id."""
    from artemis_cli.model.generation import GenerationRequest, request_seed
    from artemis_cli.model.conversation import chat_prompt, tokenize_prompt
    from artemis_cli.model.inputs import load_video_feature, referring_inputs

    mm = loaded.model.mm
    if sample.referring is not None:
        record = sample.referring.model_copy(update={"question": None})
        inputs = referring_inputs(record, clip=sample.root / record.clip_path, frame_dir=sample.root / record.frame_path,
                                  tokenizer=loaded.tokenizer, image_processor=loaded.image_processor,
                                  rng=random.Random(request_seed(seed, sample.id)), train=False,
                                  num_boxes=mm.tracked_roi_tokens(prompt.num_tracked), num_tracked=prompt.num_tracked,
                                  crop_correct=prompt.crop_correct, template=prompt.template,
                                  feature_width=mm.mm_hidden_size, ref=sample.id)
        return [GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=request_seed(seed, sample.id),
                                  roi_seed=inputs.roi_seed, roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes)]
    video = load_video_feature(sample.feature, mm.mm_hidden_size)
    requests = []
    for index, question in enumerate(sample.questions):
        ids = tokenize_prompt(chat_prompt("<image>\n" + question, prompt.template), loaded.tokenizer)
        requests.append(GenerationRequest(input_ids=ids, media=[video], seed=request_seed(seed, sample.id, index)))
    return requests
