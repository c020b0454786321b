"""The inputs a model takes for one sample, and the one function that builds them from a referring record.

Training (stage 3) and inference (VideoRefBench, `ask`, the web page, the server) all turn a referring
record into token ids, the clip feature, the 9 RoI frames and their boxes here, so a prompt or frame
choice can never differ between the two.

Random draws in `referring_inputs` come from one `random.Random` in the published code's order: question
template (when the record has none), tracking-list sentence, tracked frames (training jitter), key frame
(when the record has none), then the seed of the k-means member pick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from artemis_cli.data.records import ReferringRecord
from artemis_cli.errors import InputError
from artemis_cli.model.config import BOX_TOKEN_INDEX, IMAGE_TOKEN_INDEX


@dataclass
class ModelInputs:
    """What the model takes for one sample, before batching (training and inference alike)."""

    ref: str
    input_ids: list[int]  # -200 per <image>/<video>, -500 per <bbox>
    labels: Optional[list[int]]  # -100 except on assistant answers; None for generation
    media: list[torch.Tensor] = field(default_factory=list)  # per -200: video [T, C] or image [3, S, S]
    roi_frames: Optional[torch.Tensor] = None  # [F, 3, S, S], key frame first
    roi_boxes: Optional[torch.Tensor] = None  # [F, 4] in [0, 1]
    roi_seed: Optional[int] = None  # seeds the random pick among k-means cluster members

    def num_tokens(self, image_tokens: int) -> int:
        """LLM tokens after splicing: text + video rows + `image_tokens` per image + one per box."""
        placeholders = sum(1 for t in self.input_ids if t in (IMAGE_TOKEN_INDEX, BOX_TOKEN_INDEX))
        media = sum(m.shape[0] if m.dim() == 2 else image_tokens for m in self.media)
        boxes = sum(1 for t in self.input_ids if t == BOX_TOKEN_INDEX)
        return len(self.input_ids) - placeholders + media + boxes


def load_video_feature(path: Path, width: Optional[int] = None) -> torch.Tensor:
    """A `[T, C]` float32 clip feature through the safe loader; a wrong shape or width is an `InputError`."""
    import numpy as np

    from artemis_cli.data.feature_files import load_feature

    array = load_feature(path)
    if array.ndim != 2:
        raise InputError(f"{path}: feature has shape {list(array.shape)}, expected [T, C]")
    if width is not None and array.shape[1] != width:
        raise InputError(f"{path}: feature width {array.shape[1]} but the model's tower width is {width}",
                         hint="extract the features with the same CLIP tower the model uses")
    # float32 on the host, as the tower's image features are; the model casts to the projector's dtype.
    return torch.from_numpy(np.ascontiguousarray(array)).float()  # [T, C]


def referring_inputs(record: ReferringRecord, *, clip: Path, frame_dir: Path, tokenizer, image_processor,
                     rng: random.Random, train: bool = True, num_boxes: int = 4, num_tracked: int = 8,
                     frame_sampling: str = "average", crop_correct: bool = False, template: Optional[str] = None,
                     feature_width: Optional[int] = None, ref: str = "", exact_boxes: bool = False) -> ModelInputs:
    """Build the inputs of one referring record.

    `train=True`: the stage-3 prompt (``<video>``, the record's question or a template, a tracking
    sentence and `num_boxes` tracked ``<bbox>``, ``.``) answered by `caption`, labels on the answer only,
    jittered frame sampling; template ``vicuna_v1``. `train=False`: the published VideoRefBench prompt
    (fixed question unless the record has one), an open assistant turn, no labels, every n//8-th
    frame; template ``llava_v1``. `num_boxes` is the number of tracked RoI tokens the model keeps
    (`MMSettings.tracked_roi_tokens`: 4 with k-means). `exact_boxes` divides the pixel boxes exactly
    instead of with the published fp16 rounding (`sampling.normalise_boxes`). Returns `ModelInputs` with `media` = [clip feature
    [T, C]], `roi_frames` [1 + num_tracked, 3, S, S] and `roi_boxes` [1 + num_tracked, 4].
    """
    from artemis_cli.model.conversation import (chat_prompt, referring_question, tokenize_conversation,
                                                tokenize_prompt)
    from artemis_cli.model.sampling import load_roi_inputs, sample_roi_frames

    question = referring_question(num_boxes, question=record.question, train=train, rng=rng)
    selection = sample_roi_frames(record.track_list, record.frame_id, key_frame_id=record.key_frame_id,
                                  key_frame_box=record.key_frame_box, num_tracked=num_tracked, jitter=train,
                                  mode=frame_sampling, rng=rng)
    roi_seed = rng.getrandbits(31)
    if train:
        turns = [{"from": "human", "value": question}, {"from": "gpt", "value": record.caption}]
        tokenized = tokenize_conversation(turns, tokenizer, template=template or "vicuna_v1")
        if tokenized.mismatch:
            raise InputError(f"{ref}: tokenization mismatch (the answer span does not cover the prompt)")
        input_ids, labels = tokenized.input_ids, tokenized.labels
    else:
        input_ids, labels = tokenize_prompt(chat_prompt(question, template or "llava_v1"), tokenizer), None
    if input_ids.count(BOX_TOKEN_INDEX) != 1 + num_boxes:
        raise InputError(f"{ref}: the prompt has {input_ids.count(BOX_TOKEN_INDEX)} <bbox> placeholder(s), "
                         f"expected {1 + num_boxes} (key frame + tracked)")
    frames, boxes = load_roi_inputs(frame_dir, selection, image_processor, crop_correct=crop_correct,
                                    exact_boxes=exact_boxes)
    feature = load_video_feature(clip, feature_width)
    return ModelInputs(ref=ref, input_ids=input_ids, labels=labels, media=[feature], roi_frames=frames,
                  roi_boxes=boxes, roi_seed=roi_seed)
