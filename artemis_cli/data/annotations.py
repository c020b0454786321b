"""Annotation files: recognise each file's record kind, validate every record, check its references."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from artemis_cli.data import records as R
from artemis_cli.data.layout import ARTEMIS_DATA, IMAGE_FOLDERS, VIDEO_FEATURE_FOLDERS, ListingCache
from artemis_cli.data.report import Report
from artemis_cli.errors import InputError

ANNOTATION_SUFFIXES = (".json",)


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[BaseModel]
    rules: Optional[Callable[[Any], list[R.Problem]]] = None


KINDS = {
    "conversation": Kind("conversation", R.ConversationRecord, R.conversation_rules),
    "referring": Kind("referring", R.ReferringRecord, R.referring_rules),
    "qa_questions": Kind("qa_questions", R.QAQuestion),
    "qa_answers": Kind("qa_answers", R.QAAnswer),
    "vcg": Kind("vcg", R.VCGRecord),
    "vcg_consistency": Kind("vcg_consistency", R.VCGConsistencyRecord),
}


def recognise_kind(record: Any) -> Optional[str]:
    """The record kind one record looks like, judged from its keys (None: no known kind)."""
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if "conversations" in keys:
        return "conversation"
    if "track_list" in keys or "clip_path" in keys:
        return "referring"
    if "question_id" in keys and "question" in keys:
        return "qa_questions"
    if "Q1" in keys or "Q2" in keys:
        return "vcg_consistency"
    if "Q" in keys:
        return "vcg"
    if "answer" in keys:
        return "qa_answers"
    return None


def _loc(parts: tuple) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(record)"


@dataclass
class AnnotationFile:
    path: Path
    kind: Optional[str] = None
    n_records: int = 0
    feature_refs: list[str] = field(default_factory=list)


class AnnotationChecker:
    """Validates annotation files against the models and, with a DATA_ROOT, their file references."""

    def __init__(self, report: Report, data_root: Optional[Path], on_record: Optional[Callable[[int], None]] = None):
        self.report = report
        self.data_root = data_root
        self.listings = ListingCache()
        self.on_record = on_record
        self.feature_refs: set[str] = set()
        self.kind_counts: Counter[str] = Counter()

    def check_file(self, path: Path) -> AnnotationFile:
        info = AnnotationFile(path)
        from artemis_cli.common.jsonio import load_json

        try:
            data = load_json(path)
        except InputError as exc:
            self.report.error("json", str(path), None, None, exc.message)
            return info
        if not isinstance(data, list):
            self.report.error("annotation_file", str(path), None, None,
                              f"expected a JSON list of records, got a JSON {type(data).__name__}")
            return info
        if not data:
            self.report.error("annotation_file", str(path), None, None, "the list of records is empty")
            return info
        # Judge by the most common kind among the first records, so one broken first record
        # is reported as a broken record rather than making the whole file unrecognisable.
        votes = Counter(k for k in map(recognise_kind, data[:25]) if k is not None)
        kind = votes.most_common(1)[0][0] if votes else None
        if kind is None:
            keys = sorted(data[0].keys()) if isinstance(data[0], dict) else type(data[0]).__name__
            self.report.error("annotation_file", str(path), 0, None,
                              f"fits no known record kind (first record has {keys}); expected conversation, "
                              "referring, QA question/answer or Video-ChatGPT records")
            return info
        info.kind = kind
        info.n_records = len(data)
        self.kind_counts[kind] += len(data)
        spec = KINDS[kind]
        check_refs = getattr(self, f"_refs_{kind}", None) if self.data_root is not None else None
        for index, raw in enumerate(data):
            self._check_record(path, index, raw, spec, check_refs)
            if self.on_record is not None:
                self.on_record(1)
        return info

    def _check_record(self, path: Path, index: int, raw: Any, spec: Kind, check_refs) -> None:
        where = str(path)
        if not isinstance(raw, dict):
            self.report.error("record", where, index, None, f"expected an object, got {type(raw).__name__}")
            return
        try:
            record = spec.model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                message = "missing required field" if err["type"] == "missing" else err["msg"]
                self.report.error("record", where, index, _loc(err["loc"]), f"{message} ({spec.name} record)")
            return
        if spec.rules is not None:
            for field_name, message in spec.rules(record):
                self.report.error("record", where, index, field_name, message)
        if check_refs is not None:
            check_refs(where, index, record)

    # ---- file references (only with a DATA_ROOT) -------------------------------------------------

    def _find(self, relative: str, folders: tuple[str, ...]) -> Optional[str]:
        for folder in folders:
            candidate = os.path.join(self.data_root, folder, relative)
            if self.listings.is_file(candidate):
                return candidate
        return None

    def _refs_conversation(self, where: str, index: int, record: R.ConversationRecord) -> None:
        for n, image in enumerate(record.images):
            if self._find(image, IMAGE_FOLDERS) is None:
                field_name = "image" if isinstance(record.image, str) else f"image[{n}]"
                self.report.error("missing_file", where, index, field_name,
                                  f"{image!r} not found in DATA_ROOT/{' or DATA_ROOT/'.join(IMAGE_FOLDERS)}")
        if len(record.images) > R.MAX_IMAGES:
            self.report.warning("record", where, index, "image",
                                f"{len(record.images)} images; only {R.MAX_IMAGES} are used per record")
        if record.video_clip:
            found = self._find(record.video_clip, VIDEO_FEATURE_FOLDERS)
            if found is None:
                self.report.error("missing_file", where, index, "video_clip",
                                  f"{record.video_clip!r} not found in DATA_ROOT/{' or DATA_ROOT/'.join(VIDEO_FEATURE_FOLDERS)}")
            else:
                self.feature_refs.add(found)

    def _refs_referring(self, where: str, index: int, record: R.ReferringRecord) -> None:
        base = os.path.join(self.data_root, ARTEMIS_DATA)
        clip = os.path.join(base, record.clip_path)
        if self.listings.is_file(clip):
            self.feature_refs.add(clip)
        else:
            self.report.error("missing_file", where, index, "clip_path",
                              f"{record.clip_path!r} not found in DATA_ROOT/{ARTEMIS_DATA}")
        frames = self.listings.files_in(os.path.join(base, record.frame_path))
        if frames is None:
            self.report.error("missing_file", where, index, "frame_path",
                              f"frame folder {record.frame_path!r} not found in DATA_ROOT/{ARTEMIS_DATA}")
            return
        missing = [str(name) for name in record.frame_id if str(name) not in frames]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            self.report.error("missing_file", where, index, "frame_id",
                              f"{len(missing)} frame(s) not in {record.frame_path!r}: {shown}")
        if record.key_frame_id not in (None, "") and str(record.key_frame_id) not in frames:
            self.report.error("missing_file", where, index, "key_frame_id",
                              f"key frame {record.key_frame_id!r} not in {record.frame_path!r}")


def find_annotation_files(folder: Path, report: Report) -> list[Path]:
    """Every `.json` file under `folder`, recursively, in a stable order."""
    if not folder.exists():
        report.error("annotation_file", str(folder), None, None, "annotations folder does not exist")
        return []
    if folder.is_file():
        return [folder]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda exc: report.error(
            "annotation_file", str(exc.filename), None, None, f"folder cannot be read ({exc.strerror})")):
        dirnames.sort()
        found.extend(Path(dirpath) / name for name in sorted(filenames) if name.lower().endswith(ANNOTATION_SUFFIXES))
    if not found:
        report.error("annotation_file", str(folder), None, None, "no .json annotation files found")
    return found


def partner_name(stem: str) -> Optional[str]:
    """The answer file stem that pairs with a question file stem (``test_q`` -> ``test_a``)."""
    for q, a in (("_q", "_a"), ("questions", "answers"), ("question", "answer")):
        if stem.endswith(q):
            return stem[: -len(q)] + a
    return None


def check_qa_pairs(files: list[AnnotationFile], report: Report) -> None:
    """A QA question file and its answer file (same folder) must have the same number of records."""
    by_folder: dict[Path, list[AnnotationFile]] = {}
    for info in files:
        if info.kind in ("qa_questions", "qa_answers"):
            by_folder.setdefault(info.path.parent, []).append(info)
    for folder, infos in by_folder.items():
        questions = [i for i in infos if i.kind == "qa_questions"]
        answers = {i.path.stem: i for i in infos if i.kind == "qa_answers"}
        for q in questions:
            partner = answers.get(partner_name(q.path.stem) or "")
            if partner is None and len(questions) == 1 and len(answers) == 1:
                partner = next(iter(answers.values()))
            if partner is None:
                report.error("qa_pair", str(q.path), None, None,
                             f"no answer file beside this question file (expected {partner_name(q.path.stem) or '<name>_a'}.json)")
            elif partner.n_records != q.n_records:
                report.error("qa_pair", str(q.path), None, None,
                             f"{q.n_records} questions but {partner.path.name} has {partner.n_records} answers (they pair by position)")
