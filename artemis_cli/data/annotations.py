"""Annotation files: recognise each file's record format, validate every record, resolve and check the
files it references.

`ReferenceResolver` is the one place that says where a record's files are (the folders of
`data.layout.reference_folders`) and which of them must exist: the images and video feature of a
stage 1-2 conversation; the clip feature, the frame folder and the frames a referring sample reads
(every tracked frame and the key frame) of a stage 3 / VideoRefBench record. `data verify-layout`
(`AnnotationChecker`) and `train` (`train.records.read_records`) both check records through it."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pydantic import ValidationError

from artemis_cli.common.validation import error_location, error_message
from artemis_cli.data import records as R
from artemis_cli.data.layout import ListingCache, reference_folders
from artemis_cli.data.records import RECORD_FORMATS, RecordFormat, recognise_format
from artemis_cli.data.report import Report
from artemis_cli.errors import InputError

ANNOTATION_SUFFIXES = (".json", ".jsonl")  # JSON lists; JSON Lines as PLM-VideoBench publishes its files


class ReferenceResolver:
    """Finds the files a record references under the given folders (one directory listing per folder).

    Every method returns the resolved paths and the problems as ``(field, message)`` pairs; with
    ``check_files=False`` nothing is looked up and the first folder is assumed. `root` is only for
    messages: folders under it are shown as ``DATA_ROOT/<folder>``."""

    def __init__(self, image_folders: Sequence[Path], video_folders: Sequence[Path], *, check_files: bool = True,
                 root: Optional[Path] = None, listings: Optional[ListingCache] = None):
        self.image_folders = [str(p) for p in image_folders]
        self.video_folders = [str(p) for p in video_folders]
        self.check_files = check_files
        self.root = str(root) if root is not None else None
        self.listings = listings or ListingCache()
        self._frame_sizes: dict[str, tuple[int, ...]] = {}

    def _shown(self, folders: list[str]) -> str:
        def one(folder: str) -> str:
            if self.root is not None:
                relative = os.path.relpath(folder, self.root)
                if not relative.startswith(".."):
                    return "DATA_ROOT" if relative == "." else f"DATA_ROOT/{relative}"
            return folder

        return " or ".join(one(folder) for folder in folders)

    def find(self, relative: str, folders: list[str], *, folder: bool = False) -> Optional[Path]:
        for base in folders:
            candidate = os.path.join(base, relative)
            if not self.check_files or (self.listings.is_dir(candidate) if folder else self.listings.is_file(candidate)):
                return Path(candidate)
        return None

    def conversation(self, record: R.ConversationRecord) -> tuple[list[Path], Optional[Path], list[R.Problem]]:
        """(image files, video feature file, problems) of a stage 1-2 record."""
        problems: list[R.Problem] = []
        images = []
        for n, image in enumerate(record.images):
            found = self.find(image, self.image_folders)
            if found is None:
                field_name = "image" if isinstance(record.image, str) else f"image[{n}]"
                problems.append((field_name, f"{image!r} not found in {self._shown(self.image_folders)}"))
            else:
                images.append(found)
        video = None
        if record.video is not None and record.video_clip:
            video = self.find(record.video_clip, self.video_folders)
            if video is None:
                problems.append(("video_clip", f"{record.video_clip!r} not found in {self._shown(self.video_folders)}"))
        return images, video, problems

    def referring(self, record: R.ReferringRecord) -> tuple[Optional[Path], Optional[Path], list[R.Problem]]:
        """(clip feature file, frame folder, problems) of a referring record; the frames checked are
        those a sample reads: every tracked frame (a non-empty `track_list` entry) and the key frame."""
        problems: list[R.Problem] = []
        clip = self.find(record.clip_path, self.video_folders)
        if clip is None:
            problems.append(("clip_path", f"{record.clip_path!r} not found in {self._shown(self.video_folders)}"))
        frame_dir = self.find(record.frame_path, self.video_folders, folder=True)
        if frame_dir is None:
            problems.append(("frame_path", f"frame folder {record.frame_path!r} not found in "
                                           f"{self._shown(self.video_folders)}"))
            return clip, None, problems
        if self.check_files:
            present = self.listings.files_in(str(frame_dir)) or frozenset()
            tracked = [str(name) for name, box in zip(record.frame_id, record.track_list) if box]
            missing = list(dict.fromkeys(name for name in tracked if name not in present))
            if missing:
                shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                problems.append(("frame_id", f"{len(missing)} tracked frame(s) not in {record.frame_path!r}: {shown}"))
            if record.key_frame_box and record.key_frame_id not in (None, "") and str(record.key_frame_id) not in present:
                problems.append(("key_frame_id", f"key frame {record.key_frame_id!r} not in {record.frame_path!r}"))
            problems += self._boxes_in_frame(record, frame_dir, present)
        return clip, frame_dir, problems

    def _boxes_in_frame(self, record: R.ReferringRecord, frame_dir: Path, present) -> list[R.Problem]:
        """Boxes against the real frame size, read from one frame's header (the frames of a clip share it)."""
        first = next((str(name) for name in record.frame_id if str(name) in present), None)
        if first is None:
            return []
        size = self._frame_sizes.get(str(frame_dir))
        if size is None:
            size = self._frame_sizes[str(frame_dir)] = _image_size(frame_dir / first)
        if not size:
            return []
        boxes = [(f"track_list[{i}]", box) for i, box in enumerate(record.track_list) if box and len(box) == 4]
        if record.key_frame_box and len(record.key_frame_box) == 4:
            boxes.append(("key_frame_box", record.key_frame_box))
        problems = []
        for where, box in boxes:
            if R.box_problem(box, where) is None:  # impossible boxes are the record rules' to report
                problem = R.box_frame_problem(box, where, *size)
                if problem:
                    problems.append(problem)
        return problems


def _image_size(path: Path) -> tuple[int, ...]:
    """(width, height) from an image header; () when it cannot be read (the frame checks report that)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return tuple(image.size)
    except Exception:  # noqa: BLE001 - any unreadable frame: nothing to check the boxes against
        return ()


@dataclass
class AnnotationFile:
    path: Path
    kind: Optional[str] = None
    n_records: int = 0
    feature_refs: list[str] = field(default_factory=list)


class AnnotationChecker:
    """Validates annotation files against the models and, with a DATA_ROOT, their file references."""

    def __init__(self, report: Report, data_root: Optional[Path], on_record: Optional[Callable[[int], None]] = None,
                 stage: Optional[int] = None):
        self.report = report
        self.data_root = data_root
        self.listings = ListingCache()
        self.resolvers = {}
        if data_root is not None:
            for kind, kind_stage in (("conversation", stage if stage in (1, 2) else None), ("referring", 3)):
                images, videos = reference_folders(data_root, kind_stage)
                self.resolvers[kind] = ReferenceResolver(images, videos, root=data_root, listings=self.listings)
        self.on_record = on_record
        self.feature_refs: set[str] = set()
        self.kind_counts: Counter[str] = Counter()
        self._frame_sizes: dict[str, tuple[int, int] | tuple[()]] = {}

    def check_file(self, path: Path) -> AnnotationFile:
        info = AnnotationFile(path)
        from artemis_cli.common.jsonio import iter_jsonl, load_json

        try:
            data = [record for _, record in iter_jsonl(path)] if path.suffix.lower() == ".jsonl" else load_json(path)
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
        votes = Counter(k for k in map(recognise_format, data[:25]) if k is not None)
        kind = votes.most_common(1)[0][0] if votes else None
        if kind is None:
            keys = sorted(data[0].keys()) if isinstance(data[0], dict) else type(data[0]).__name__
            self.report.error("annotation_file", str(path), 0, None,
                              f"fits no known record kind (first record has {keys}); expected one of: "
                              + ", ".join(RECORD_FORMATS))
            return info
        info.kind = kind
        info.n_records = len(data)
        self.kind_counts[kind] += len(data)
        spec = RECORD_FORMATS[kind]
        for index, raw in enumerate(data):
            self._check_record(path, index, raw, spec)
            if self.on_record is not None:
                self.on_record(1)
        return info

    def _check_record(self, path: Path, index: int, raw: Any, spec: RecordFormat) -> None:
        where = str(path)
        if not isinstance(raw, dict):
            self.report.error("record", where, index, None, f"expected an object, got {type(raw).__name__}")
            return
        try:
            record = spec.model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                message = error_message(err, missing="missing required field")
                self.report.error("record", where, index, error_location(err["loc"], brackets=True, root="(record)"),
                                  f"{message} ({spec.name} record)")
            return
        if spec.rules is not None:
            for field_name, message in spec.rules(record):
                self.report.error("record", where, index, field_name, message)
        resolver = self.resolvers.get(spec.name)
        if resolver is None:
            return
        if spec.name == "conversation":
            _, video, problems = resolver.conversation(record)
            if len(record.images) > R.MAX_IMAGES:
                self.report.warning("record", where, index, "image",
                                    f"{len(record.images)} images; only {R.MAX_IMAGES} are used per record")
        else:
            video, _, problems = resolver.referring(record)
        if video is not None:
            self.feature_refs.add(str(video))
        for field_name, message in problems:
            self.report.error("missing_file", where, index, field_name, message)


def find_annotation_files(folder: Path, report: Report) -> list[Path]:
    """Every `.json` / `.jsonl` file under `folder`, recursively, in a stable order."""
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
