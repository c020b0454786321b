"""Does a trained Artemis answer about the boxed target? The held-out evaluation of the toy recipe.

Held-out videos are a sample made with another seed than the training data (`data make-sample --motion
classes`): two targets per video, of different colours and different motions, each with its exact caption.
Each target is asked about in turn (box on A, then on B) through the benchmark path (`model.inputs.
referring_inputs` with ``train=False``, greedy `model.generation`), and the colour and the motion are read
off the answer. Two controls ask the same questions:

- ``background``: the box moved onto empty background (a box of the target's size, still, where no target
  passes in any frame);
- ``roi_zeroed``: the model's RoI tokens replaced by zeros, so the box cannot reach the answer (both
  questions about a video then get the same answer: at most one of the pair is right).

A model that reads the boxed pixels answers the targets right and falls to chance on both controls; one
that answers from the whole video (the clip feature) cannot tell A from B.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from artemis_cli.data.synthetic_video import COLOURS, MOTIONS
from artemis_cli.errors import InputError

CONDITIONS = {"boxed": "box on the target (A, then B)", "background": "box moved onto empty background",
              "roi_zeroed": "RoI tokens zeroed"}
CHANCE = {"colour": 1 / len(COLOURS), "direction": 1 / len(MOTIONS)}
_CAPTION = re.compile(r"\b(" + "|".join(COLOURS) + r") box moves (.+?) across the scene")
ProgressFn = Optional[Callable[[int, int], None]]


def read_caption(text: str) -> tuple[Optional[str], Optional[str]]:
    """(colour, motion) named by an answer in the captions' words, None for what it does not name."""
    match = _CAPTION.search(text)
    if match:
        return match.group(1), match.group(2) if match.group(2) in MOTIONS else None
    colour = next((c for c in COLOURS if re.search(rf"\b{c}\b", text)), None)
    return colour, None


@dataclass
class ConditionResult:
    """Accuracy of one condition over every question (two per video)."""

    condition: str
    questions: int = 0
    colour: float = 0.0  # fraction of answers naming the asked target's colour
    direction: float = 0.0  # ... its motion
    both: float = 0.0  # ... both
    pairs: int = 0  # videos asked about twice (A and B) in this condition
    pairs_right: float = 0.0  # fraction of those where both answers name the right colour and motion


@dataclass
class LearnReport:
    videos: int
    conditions: dict[str, ConditionResult]
    chance: dict[str, float] = field(default_factory=lambda: dict(CHANCE))
    skipped_background: int = 0  # videos with no empty place for a background box
    seconds: float = 0.0
    answers: list[dict] = field(default_factory=list)  # every question: video, target, condition, truth, answer

    def to_json(self, answers: bool = False) -> dict:
        data = {"videos": self.videos, "chance": self.chance, "skipped_background": self.skipped_background,
                "seconds": round(self.seconds, 2),
                "conditions": {name: asdict(result) for name, result in self.conditions.items()}}
        if answers:
            data["answers"] = self.answers
        return data


def held_out_records(annotations: Path) -> dict[str, list[dict]]:
    """The referring records of a sample (training and VideoRefBench files), grouped by video (clip path)."""
    by_video: dict[str, list[dict]] = {}
    for name in ("stage3/hc_stvg_train.json", "videorefbench/hc_stvg_val.json"):
        path = annotations / name
        if not path.is_file():
            raise InputError(f"{path}: not found", hint="make the held-out videos with `artemis data make-sample "
                                                        "--motion classes`")
        for record in json.loads(path.read_text(encoding="utf-8")):
            by_video.setdefault(record["clip_path"], []).append(record)
    return by_video


def _overlaps(a, b, margin: float) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def background_box(records: list[dict], target: dict, frame_size: tuple[int, int], margin: int = 3) -> Optional[list[int]]:
    """A still box of `target`'s size that no target of the video comes within `margin` px of in any frame:
    the place farthest from every target's path, or None when there is none."""
    width, height = frame_size
    first = next(box for box in target["track_list"] if box)
    bw, bh = first[2] - first[0], first[3] - first[1]
    boxes = [box for record in records for box in record["track_list"] if box]
    best, best_distance = None, -1.0
    for y in range(0, height - bh + 1, 2):
        for x in range(0, width - bw + 1, 2):
            candidate = (x, y, x + bw, y + bh)
            if any(_overlaps(candidate, box, margin) for box in boxes):
                continue
            cx, cy = x + bw / 2, y + bh / 2
            distance = min(((b[0] + b[2]) / 2 - cx) ** 2 + ((b[1] + b[3]) / 2 - cy) ** 2 for b in boxes)
            if distance > best_distance:
                best, best_distance = [x, y, x + bw, y + bh], distance
    return best


def _moved(record: dict, box: list[int]) -> dict:
    """`record` with its box on every tracked frame (and the key frame) replaced by `box`."""
    moved = dict(record, track_list=[list(box) if entry else [] for entry in record["track_list"]])
    if record.get("key_frame_box"):
        moved["key_frame_box"] = list(box)
    return moved


def evaluate_learning(loaded, sample: Path, *, max_new_tokens: int = 32, batch_size: int = 8,
                      progress: ProgressFn = None) -> LearnReport:
    """Ask the loaded model (`model.loading.LoadedModel`) about every target of the sample in `sample`
    (`DATA_ROOT` and `annotations`, clip features extracted with the model's tower) under each of
    `CONDITIONS`; return the accuracies and every answer."""
    import torch
    from PIL import Image

    from artemis_cli.data.records import ReferringRecord
    from artemis_cli.model.generation import DecodingSettings, GenerationRequest, generate_texts, request_seed
    from artemis_cli.model.inputs import referring_inputs
    from artemis_cli.ownvideo.prepare import NUM_TRACKED
    from artemis_cli.ownvideo.referrer import TEMPLATE

    started = time.perf_counter()
    sample = Path(sample)
    root = sample / "DATA_ROOT" / "Artemis_data"
    by_video = held_out_records(sample / "annotations")
    model, tokenizer, mm = loaded.model, loaded.tokenizer, loaded.model.mm
    num_boxes = mm.tracked_roi_tokens(NUM_TRACKED)
    # What to ask is listed first; the inputs (nine decoded frames each) are built a batch at a time, so memory
    # stays flat in the number of held-out videos. The RoI-zeroed control asks with the boxed question's inputs.
    jobs: list[tuple[dict, dict, str, int]] = []  # (answer entry, record variant, name, seed)
    skipped = 0
    for clip, records in sorted(by_video.items()):
        frame_dir = root / records[0]["frame_path"]
        with Image.open(frame_dir / records[0]["frame_id"][0]) as image:
            size = image.size
        backgrounds = [background_box(records, record, size) for record in records]
        skipped += any(box is None for box in backgrounds)
        for index, (record, background) in enumerate(zip(records, backgrounds)):
            truth = read_caption(record["caption"])
            variants = {"boxed": record, "roi_zeroed": record}
            if background is not None:
                variants["background"] = _moved(record, background)
            name = f"{Path(clip).stem}_{index}"
            seed = request_seed(0, name)  # the same frames, key frame and RoI picks in every condition
            for condition, variant in variants.items():
                jobs.append(({"video": Path(clip).stem, "target": index, "condition": condition,
                              "truth": record["caption"], "colour": truth[0], "direction": truth[1]},
                             variant, name, seed))

    def request_of(variant: dict, name: str, seed: int) -> GenerationRequest:
        parsed = ReferringRecord.model_validate({k: v for k, v in variant.items() if k != "question"})
        inputs = referring_inputs(parsed, clip=root / parsed.clip_path, frame_dir=root / parsed.frame_path,
                                  tokenizer=tokenizer, image_processor=loaded.image_processor,
                                  rng=random.Random(seed), train=False, num_boxes=num_boxes, num_tracked=NUM_TRACKED,
                                  template=TEMPLATE, feature_width=mm.mm_hidden_size, ref=name)
        return GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=seed, roi_seed=inputs.roi_seed,
                                 roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes)

    zero_rois = torch.zeros(1 + num_boxes, model.config.hidden_size, dtype=model.dtype, device=model.device)
    decoding = DecodingSettings(max_new_tokens=max_new_tokens)
    answers = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        built: dict[tuple[int, str], GenerationRequest] = {}  # (id of the variant, name) -> its request
        requests = []
        for entry, variant, name, seed in chunk:
            key = (id(variant), name)
            if key not in built:
                built[key] = request_of(variant, name, seed)
            request = built[key]
            if entry["condition"] == "roi_zeroed":
                request = dataclasses.replace(request, roi_tokens=zero_rois)
            requests.append(request)
        texts = generate_texts(model, tokenizer, requests, decoding)
        for (entry, *_), text in zip(chunk, texts):
            colour, direction = read_caption(text)
            answers.append({**entry, "answer": text, "colour_right": colour == entry["colour"],
                            "direction_right": direction == entry["direction"]})
        if progress is not None:
            progress(min(start + batch_size, len(jobs)), len(jobs))
    return LearnReport(videos=len(by_video), conditions={c: _summarise(c, answers) for c in CONDITIONS},
                       skipped_background=skipped, seconds=time.perf_counter() - started, answers=answers)


def _summarise(condition: str, answers: list[dict]) -> ConditionResult:
    rows = [a for a in answers if a["condition"] == condition]
    result = ConditionResult(condition, questions=len(rows))
    if not rows:
        return result
    result.colour = sum(a["colour_right"] for a in rows) / len(rows)
    result.direction = sum(a["direction_right"] for a in rows) / len(rows)
    result.both = sum(a["colour_right"] and a["direction_right"] for a in rows) / len(rows)
    videos: dict[str, list[dict]] = {}
    for a in rows:
        videos.setdefault(a["video"], []).append(a)
    pairs = [v for v in videos.values() if len(v) >= 2]
    result.pairs = len(pairs)
    if pairs:
        result.pairs_right = sum(all(a["colour_right"] and a["direction_right"] for a in v) for v in pairs) / len(pairs)
    return result
