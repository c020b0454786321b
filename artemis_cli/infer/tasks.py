"""Benchmark samples -> generation requests: the prompt options and `build_requests`.

The samples themselves (records read and validated, ids, output fields) come from the benchmark's
spec in `artemis_cli.data.benchmarks`; this module only turns one into model inputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from artemis_cli.data.benchmarks import BenchmarkSample


@dataclass
class PromptOptions:
    """How prompts are built: conversation template, RoI frames, the box-normalisation quirk."""

    template: str = "llava_v1"
    num_tracked: int = 8
    crop_correct: bool = False
    exact_boxes: bool = False  # divide pixel boxes exactly, not with the published fp16 rounding


def build_requests(sample: BenchmarkSample, loaded, prompt: PromptOptions, seed: int) -> list:
    """Load a sample's inputs and build one `GenerationRequest` per question (raises `InputError`/`OSError`).

    A referring record goes through `model.inputs.referring_inputs`, as in training (``train=False``: the
    published VideoRefBench prompt and frame choice), with the record's own question dropped, since
    the published benchmark always asks the fixed one; its random draws come from a generator seeded
    by the run seed and the sample id. A peer benchmark's sample keeps its question (Bench-Q's MCQ, a
    `--question`, else the same fixed one) and reads its RoI frames from its video."""
    from artemis_cli.model.generation import GenerationRequest, request_seed
    from artemis_cli.model.inputs import load_video_feature, referring_inputs

    mm = loaded.model.mm
    if sample.referring is not None:
        if sample.video is not None:  # a peer benchmark: its question (or the default), frames from its video
            from artemis_cli.data.frames import VideoFrameReader

            record, frames = sample.referring, VideoFrameReader(sample.video)
            if sample.track_with:
                record = track_from_key_frame(record, frames, sample.track_with)
        else:
            record = sample.referring.model_copy(update={"question": None})
            frames = sample.root / record.frame_path
        inputs = referring_inputs(record, clip=sample.root / record.clip_path, frame_dir=frames,
                                  tokenizer=loaded.tokenizer, image_processor=loaded.image_processor,
                                  rng=random.Random(request_seed(seed, sample.id)), train=False,
                                  num_boxes=mm.tracked_roi_tokens(prompt.num_tracked), num_tracked=prompt.num_tracked,
                                  crop_correct=prompt.crop_correct, template=prompt.template,
                                  feature_width=mm.mm_hidden_size, ref=sample.id, exact_boxes=prompt.exact_boxes)
        return [GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=request_seed(seed, sample.id),
                                  roi_seed=inputs.roi_seed, roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes)]
    video = load_video_feature(sample.feature, mm.mm_hidden_size)
    return [video_question(question, video, loaded.tokenizer, prompt.template, request_seed(seed, sample.id, index))
            for index, question in enumerate(sample.questions)]


def video_question(question: str, video, tokenizer, template: str, seed: int):
    """One question about a whole video (its clip feature `video`, [T, C]): the published QA prompt
    (``<image>`` and the question in one user turn) as a `GenerationRequest`."""
    from artemis_cli.common.media import IMAGE_TOKEN
    from artemis_cli.model.conversation import chat_prompt, tokenize_prompt
    from artemis_cli.model.generation import GenerationRequest

    ids = tokenize_prompt(chat_prompt(IMAGE_TOKEN + "\n" + question, template), tokenizer)
    return GenerationRequest(input_ids=ids, media=[video], seed=seed)


def track_from_key_frame(record, frames, tracker: str):
    """Single-frame mode with a tracker: the key frame's box propagated over the record's annotated frames
    (read from `frames`, a `VideoFrameReader`) by the own-video trackers; a lost frame stays untracked."""
    from artemis_cli.ownvideo.tracking import track_boxes

    key = record.frame_id.index(record.key_frame_id)
    boxes = track_boxes(frames.arrays(record.frame_id), key, list(record.key_frame_box), tracker=tracker)
    return record.model_copy(update={"track_list": [list(box) if box else [] for box in boxes]})
