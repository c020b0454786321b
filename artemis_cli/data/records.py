"""pydantic models for every annotation record format of the published data, their semantic rules,
and `RECORD_FORMATS`, the registry `data verify-layout` recognises files by.

The formats: stage 1-2 LLaVA conversations, stage 3 / VideoRefBench referring records (a clip
feature, frames with a track, the clicked box), video-QA question and answer files,
Video-ChatGPT question records, and the peers' benchmarks: VideoRefer-Bench-D and -Q (COCO RLE masks
on sampled frames) and PLM-VideoBench RCap (items plus the per-frame boxes of its metadata). Structure (types, required keys) is checked by pydantic; the
cross-field rules (alternating turns, media tokens, box geometry, list lengths) by `*_rules`
functions that return every problem as a ``(field, message)`` pair, so a report can name each one
rather than the first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from artemis_cli.common.media import BBOX_TOKEN, IMAGE_TOKEN, VIDEO_TOKEN

MAX_IMAGES = 16
MAX_BOX_COORDINATE = 100_000
MAX_VIDEOS = 1

Number = Union[StrictInt, StrictFloat]


class _Record(BaseModel):
    # Real annotation files carry extra bookkeeping fields (ids, sources); they are not errors.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Turn(_Record):
    speaker: Literal["human", "gpt"] = Field(alias="from")
    value: StrictStr


class ConversationRecord(_Record):
    """Stage 1-2 LLaVA conversation record: text-only, image(s), video, or both."""

    id: Optional[Union[StrictStr, StrictInt]] = None
    conversations: list[Turn] = Field(min_length=1)
    image: Optional[Union[StrictStr, list[StrictStr]]] = None
    video: Optional[Union[StrictStr, list[StrictStr]]] = None
    video_clip: Optional[StrictStr] = None

    @property
    def images(self) -> list[str]:
        if self.image is None:
            return []
        return [self.image] if isinstance(self.image, str) else list(self.image)


class ReferringRecord(_Record):
    """Stage 3 / VideoRefBench record: a clip feature, frames with a track, the clicked box."""

    clip_path: StrictStr = Field(min_length=1)
    caption: StrictStr
    question: Optional[StrictStr] = None
    frame_path: StrictStr
    frame_id: list[Union[StrictStr, StrictInt]] = Field(min_length=1)
    track_list: list[list[Number]]
    key_frame_id: Optional[Union[StrictStr, StrictInt]] = None
    key_frame_box: Optional[list[Number]] = None
    video_name: Optional[Union[StrictStr, StrictInt]] = None


class QAQuestion(_Record):
    video_name: Union[StrictStr, StrictInt]
    question: StrictStr
    question_id: Union[StrictStr, StrictInt]


class QAAnswer(_Record):
    answer: Union[StrictStr, StrictInt, StrictFloat, bool]


class VCGRecord(_Record):
    """Video-ChatGPT generic / temporal question."""

    video_name: Union[StrictStr, StrictInt]
    Q: StrictStr
    A: StrictStr


class VCGConsistencyRecord(_Record):
    video_name: Union[StrictStr, StrictInt]
    Q1: StrictStr
    Q2: StrictStr
    A: StrictStr


class RLEMask(_Record):
    """A COCO run-length-encoded mask: ``size`` [height, width], ``counts`` compressed string or run list."""

    size: list[StrictInt] = Field(min_length=2, max_length=2)
    counts: Union[StrictStr, list[StrictInt]]


class MaskedFrame(_Record):
    segmentation: Optional[RLEMask] = None  # null: the target is not in this frame


FrameMasks = dict[str, MaskedFrame]  # frame index (as a string) -> that frame's mask


class VideoReferDRecord(_Record):
    """VideoRefer-Bench-D: one object's masks on sampled frames and its reference description."""

    id: Optional[Union[StrictStr, StrictInt]] = None
    video: StrictStr = Field(min_length=1)
    caption: StrictStr
    frame_idx: Union[StrictStr, StrictInt]  # the frame of single-frame mode (a key of each annotation)
    annotation: list[FrameMasks] = Field(min_length=1)


class VideoReferQRecord(_Record):
    """VideoRefer-Bench-Q: a multiple-choice question about one or more masked objects."""

    id: Optional[Union[StrictStr, StrictInt]] = None
    video: StrictStr = Field(min_length=1)
    Question: StrictStr
    type: StrictStr
    options: list[StrictStr] = Field(min_length=2)
    Answer: StrictStr
    frame_idx: Union[StrictStr, StrictInt]
    annotation: list[FrameMasks] = Field(min_length=1)


class RCapRecord(_Record):
    """PLM-VideoBench RCap item: describe what one masklet does within frames [start_frame, end_frame]."""

    uid: Union[StrictStr, StrictInt]
    video: StrictStr = Field(min_length=1)
    masklet_id: Union[StrictStr, StrictInt]
    total_frames: StrictInt = Field(ge=1)
    caption: StrictStr
    start_frame: StrictInt = Field(ge=0)
    end_frame: StrictInt = Field(ge=0)


class STCMetadataRecord(_Record):
    """PLM-VideoBench metadata line: the per-frame boxes [x1, y1, x2, y2] of one (video, masklet_id)."""

    video: StrictStr = Field(min_length=1)
    masklet_id: Union[StrictStr, StrictInt]
    bbox: dict[str, Optional[list[Number]]]


Problem = tuple[str, str]  # (field, message)


def conversation_rules(record: ConversationRecord) -> list[Problem]:
    problems: list[Problem] = []
    for index, turn in enumerate(record.conversations):
        expected = "human" if index % 2 == 0 else "gpt"
        if turn.speaker != expected:
            problems.append((f"conversations[{index}].from",
                             f"expected {expected!r} (turns alternate human/gpt, starting with human), got {turn.speaker!r}"))
            break
    text = " ".join(turn.value for turn in record.conversations if turn.speaker == "human")
    has_image_token = IMAGE_TOKEN in text
    has_video_token = VIDEO_TOKEN in text
    if record.images and not has_image_token:
        problems.append(("conversations", f"record has `image` but no human turn contains {IMAGE_TOKEN}"))
    if not record.images and has_image_token:
        problems.append(("image", f"a human turn contains {IMAGE_TOKEN} but the record has no `image`"))
    has_video = record.video is not None
    if has_video and not has_video_token:
        problems.append(("conversations", f"record has `video` but no human turn contains {VIDEO_TOKEN}"))
    if not has_video and has_video_token:
        problems.append(("video", f"a human turn contains {VIDEO_TOKEN} but the record has no `video`"))
    if has_video and not record.video_clip:
        problems.append(("video_clip", "record has `video` but no `video_clip` (the feature file to load)"))
    if isinstance(record.video, list) and len(record.video) > MAX_VIDEOS:
        problems.append(("video", f"{len(record.video)} videos; at most {MAX_VIDEOS} per record is supported"))
    return problems


def box_problem(box: list, where: str) -> Optional[Problem]:
    if len(box) != 4:
        return where, f"a box is 4 numbers [x1, y1, x2, y2], got {len(box)}"
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        return where, f"box {list(box)} has a coordinate that is not a finite number"
    if min(box) < 0:
        return where, f"box {list(box)} has a negative coordinate (pixels start at 0)"
    if max(box) > MAX_BOX_COORDINATE:
        return where, f"box {list(box)} has a coordinate above {MAX_BOX_COORDINATE} pixels (no video frame is that large)"
    if not (x1 < x2 and y1 < y2):
        return where, f"box {list(box)} needs x1 < x2 and y1 < y2"
    return None


def box_frame_problem(box: list, where: str, width: int, height: int) -> Optional[Problem]:
    """A box checked against its frame's real size (a little slack for trackers' rounding)."""
    slack_x, slack_y = max(2.0, 0.01 * width), max(2.0, 0.01 * height)
    x1, y1, x2, y2 = box
    if x1 >= width or y1 >= height:
        return where, f"box {list(box)} starts outside the {width}x{height} frame"
    if x2 > width + slack_x or y2 > height + slack_y:
        return where, f"box {list(box)} reaches outside the {width}x{height} frame"
    return None


def referring_rules(record: ReferringRecord) -> list[Problem]:
    problems: list[Problem] = []
    if len(record.track_list) != len(record.frame_id):
        problems.append(("track_list", f"{len(record.track_list)} entries but frame_id has {len(record.frame_id)}"))
    tracked = 0
    for index, box in enumerate(record.track_list):
        if not box:
            continue
        tracked += 1
        problem = box_problem(box, f"track_list[{index}]")
        if problem:
            problems.append(problem)
    if tracked == 0:
        problems.append(("track_list", "no tracked frame (every entry is []); at least one is needed"))
    if record.question is not None and record.question.count(BBOX_TOKEN) != 1:
        problems.append(("question", f"must contain exactly one {BBOX_TOKEN}, found {record.question.count(BBOX_TOKEN)}"))
    if record.key_frame_box:
        problem = box_problem(record.key_frame_box, "key_frame_box")
        if problem:
            problems.append(problem)
        if record.key_frame_id in (None, ""):
            problems.append(("key_frame_id", "key_frame_box is given but key_frame_id is empty"))
    return problems


MCQ_LETTER = re.compile(r"\(([A-Z])\)")  # "(B) a red car" -> B, the published Bench-Q answer key
REGION = "<region>"


def _mask_frames_rules(record: Any) -> list[Problem]:
    """Every object has the single-frame mode's frame, and some frame with a mask."""
    problems: list[Problem] = []
    key = str(record.frame_idx)
    for index, frames in enumerate(record.annotation):
        if not frames:
            problems.append((f"annotation[{index}]", "no annotated frame"))
            continue
        bad = [name for name in frames if not name.isdigit()]
        if bad:
            problems.append((f"annotation[{index}]", f"frame keys must be frame indices, got {bad[0]!r}"))
        if key not in frames:
            problems.append((f"annotation[{index}]", f"no mask for frame_idx {key!r} (single-frame mode's frame)"))
        if all(frame.segmentation is None for frame in frames.values()):
            problems.append((f"annotation[{index}]", "every segmentation is null: the object is in no frame"))
        for name, frame in frames.items():
            mask = frame.segmentation
            if mask is None:
                continue
            where = f"annotation[{index}].{name}.segmentation"
            if min(mask.size) <= 0:
                problems.append((f"{where}.size", f"expected [height, width] > 0, got {mask.size}"))
            elif isinstance(mask.counts, list) and sum(mask.counts) != mask.size[0] * mask.size[1]:
                problems.append((f"{where}.counts", f"runs sum to {sum(mask.counts)}, expected "
                                                    f"{mask.size[0] * mask.size[1]} (height x width)"))
            elif isinstance(mask.counts, str) and not all(48 <= ord(c) < 112 for c in mask.counts):
                problems.append((f"{where}.counts", "not a compressed COCO RLE string (characters outside '0'..'o')"))
    return problems


def videorefer_q_rules(record: VideoReferQRecord) -> list[Problem]:
    problems = _mask_frames_rules(record)
    regions = record.Question.count(REGION)
    if regions != len(record.annotation):
        problems.append(("Question", f"{regions} {REGION} mark(s) but {len(record.annotation)} annotated object(s)"))
    letters = [m.group(1) if (m := MCQ_LETTER.search(option)) else None for option in record.options]
    if None in letters:
        problems.append((f"options[{letters.index(None)}]", "expected an option that starts with its letter, like '(A) ...'"))
    answer = MCQ_LETTER.search(record.Answer)
    if answer is None:
        problems.append(("Answer", f"no option letter like '(A)' in {record.Answer!r}"))
    elif None not in letters and answer.group(1) not in letters:
        problems.append(("Answer", f"letter {answer.group(1)} is not among the options ({', '.join(letters)})"))
    return problems


def rcap_rules(record: RCapRecord) -> list[Problem]:
    problems: list[Problem] = []
    if record.end_frame < record.start_frame:
        problems.append(("end_frame", f"{record.end_frame} is before start_frame {record.start_frame}"))
    if record.end_frame >= record.total_frames:
        problems.append(("end_frame", f"{record.end_frame} is not within the video's {record.total_frames} frame(s)"))
    return problems


def stc_metadata_rules(record: STCMetadataRecord) -> list[Problem]:
    problems: list[Problem] = []
    for name, box in record.bbox.items():
        if not name.isdigit():
            problems.append((f"bbox.{name}", "keys must be frame indices"))
        elif box:
            problem = box_problem(box, f"bbox.{name}")
            if problem:
                problems.append(problem)
    if not any(record.bbox.values()):
        problems.append(("bbox", "no frame has a box"))
    return problems


@dataclass(frozen=True)
class RecordFormat:
    """One annotation record format: its model, its cross-field rules, and the keys that identify it.

    A record is of this format when it has every key of `all_keys` and at least one of `any_keys`;
    `RECORD_FORMATS` is tried in order (the first match wins)."""

    name: str
    model: type[BaseModel]
    rules: Optional[Callable[[Any], list[Problem]]] = None
    any_keys: tuple[str, ...] = ()
    all_keys: tuple[str, ...] = ()

    def matches(self, keys) -> bool:
        return all(k in keys for k in self.all_keys) and (not self.any_keys or any(k in keys for k in self.any_keys))


RECORD_FORMATS: dict[str, RecordFormat] = {f.name: f for f in (
    RecordFormat("videorefer_q", VideoReferQRecord, videorefer_q_rules, all_keys=("Question", "options", "annotation")),
    RecordFormat("videorefer_d", VideoReferDRecord, _mask_frames_rules, all_keys=("video", "caption", "annotation")),
    RecordFormat("plm_rcap", RCapRecord, rcap_rules, all_keys=("masklet_id", "start_frame", "end_frame")),
    RecordFormat("plm_metadata", STCMetadataRecord, stc_metadata_rules, all_keys=("masklet_id", "bbox")),
    RecordFormat("conversation", ConversationRecord, conversation_rules, any_keys=("conversations",)),
    RecordFormat("referring", ReferringRecord, referring_rules, any_keys=("track_list", "clip_path")),
    RecordFormat("qa_questions", QAQuestion, all_keys=("question_id", "question")),
    RecordFormat("vcg_consistency", VCGConsistencyRecord, any_keys=("Q1", "Q2")),
    RecordFormat("vcg", VCGRecord, any_keys=("Q",)),
    RecordFormat("qa_answers", QAAnswer, any_keys=("answer",)),
)}


def recognise_format(record: Any) -> Optional[str]:
    """The record format one record looks like, judged from its keys (None: no known format)."""
    if not isinstance(record, dict):
        return None
    return next((f.name for f in RECORD_FORMATS.values() if f.matches(record.keys())), None)
