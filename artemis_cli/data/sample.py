"""`make_sample`: a tiny, complete, deterministic DATA_ROOT plus annotation files of every kind.

Everything is consistent: annotations reference files that exist, track lists are the true boxes
of the synthetic targets, captions describe their real motion. Feature files are deterministic
random float16 arrays in the published `[356, C]` pickle format (the demo re-extracts real ones
from the sample videos with `artemis features extract`).
"""

from __future__ import annotations

import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from artemis_cli.common.atomic import atomic_write_bytes, atomic_write_json
from artemis_cli.data.feature_files import save_feature
from artemis_cli.data.layout import ARTEMIS_DATA
from artemis_cli.data.synthetic_video import (COLOURS, Motion, SyntheticVideo, encode_mp4, make_image, make_video,
                                              save_jpeg)
from artemis_cli.data.verify import FEATURE_ROWS
from artemis_cli.errors import UsageError

WIDTH, HEIGHT = 96, 64  # non-square on purpose: exercises the box-normalisation quirk
N_FRAMES = 24
QUESTION = "What is the <bbox> doing in this video?"


MAX_VIDEOS = 1000
MIN_SIZE, MAX_SIZE = 32, 1024  # frame width/height of the HC-STVG videos
MAX_FEATURE_DIM = 16384  # [356, C] float16 per file: 11.7 MB at the bound
# Files every sample has: `--overwrite` removes DATA_ROOT / annotations only when they hold these.
_SAMPLE_MARKERS = {"DATA_ROOT": ("Artemis_data/HC-STVG/clip_feature/hcstvg_000.pkl",),
                   "annotations": ("videorefbench/hc_stvg_val.json", "stage3/hc_stvg_train.json")}


def parse_size(text: str) -> tuple[int, int]:
    """``"112x112"`` -> (112, 112); anything else is a `UsageError` naming --size."""
    width, sep, height = str(text).lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 112x112")
    return int(width), int(height)


def _check_is_sample(folder: Path, part: str) -> None:
    from artemis_cli.common.paths import check_owned

    check_owned(folder, option=f"OUT/{part}", command="data make-sample", markers=_SAMPLE_MARKERS[part])


@dataclass
class SampleSummary:
    out: Path
    data_root: Path
    annotations: Path
    files: int = 0
    bytes: int = 0
    written: dict[str, str] = field(default_factory=dict)


class _Writer:
    def __init__(self, out: Path, seed: int, feature_dim: int):
        self.out = out
        self.root = out / "DATA_ROOT"
        self.ann = out / "annotations"
        self.seed = seed
        self.feature_dim = feature_dim

    def rng(self, name: str) -> np.random.Generator:
        # Seeded by name, so each file is the same whatever else is generated around it.
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def feature(self, relative: str) -> None:
        array = self.rng(relative).standard_normal((FEATURE_ROWS, self.feature_dim)).astype(np.float16)
        save_feature(self.root / relative, array, "pkl")

    def image(self, relative: str) -> str:
        pixels, caption = make_image(self.rng(relative), WIDTH, HEIGHT)
        save_jpeg(self.root / relative, pixels)
        return caption

    def frames(self, folder: str, video: SyntheticVideo, pattern: str) -> list[str]:
        names = [pattern.format(i + 1) for i in range(len(video.frames))]
        for name, frame in zip(names, video.frames):
            save_jpeg(self.root / folder / name, frame)
        return names

    def annotation(self, relative: str, records: list) -> None:
        atomic_write_json(self.ann / relative, records)


def _conv(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _referring_records(w: _Writer, source: str, clip: str, video: SyntheticVideo, frame_folder: str,
                       frame_names: list[str], with_question: bool, video_name: str | None = None) -> list[dict]:
    records = []
    rng = w.rng(f"track:{source}:{clip}")
    for k, target in enumerate(video.targets):
        # The tracker "loses" the target on a few frames, as real track lists do.
        lost = set(rng.choice(len(frame_names), size=max(1, len(frame_names) // 8), replace=False).tolist())
        track = [[] if i in lost else list(box) for i, box in enumerate(target.boxes)]
        tracked = [i for i, box in enumerate(track) if box]
        key = tracked[len(tracked) // 3]
        record = {
            "clip_path": f"{source}/clip_feature/{clip}.pkl",
            "caption": target.motion(),
            "frame_path": frame_folder,
            "frame_id": frame_names,
            "track_list": track,
            # One record leaves the clicked frame empty: training then picks a random tracked frame.
            "key_frame_id": frame_names[key] if k == 0 else "",
            "key_frame_box": track[key] if k == 0 else [],
        }
        if with_question:
            record["question"] = QUESTION
        if video_name is not None:
            record["video_name"] = f"{video_name}_{k}"
        records.append(record)
    return records


def make_sample(out: Path, seed: int = 0, videos: int = 2, feature_dim: int = 1024, overwrite: bool = False, *,
                targets: int = 2, motion: Motion = "free", size: tuple[int, int] = (WIDTH, HEIGHT)) -> SampleSummary:
    """Write `out/DATA_ROOT` and `out/annotations` (see module docstring); return what was written.

    `videos` HC-STVG videos of `size` (width, height) with `targets` moving boxes each; the last video is the
    VideoRefBench split. `motion` "classes" gives each box of a video its own colour and its own one of the
    nine caption motions, clearly (`synthetic_video.class_paths`), and adds stage-2 descriptions of the
    training videos (every target's caption, `stage2/hcstvg_captions.json`) so stage 2 teaches the LLM the
    captions' words: the data of the toy recipe (`examples/configs/toy_stage*.yaml`)."""
    if type(videos) is not int or not 2 <= videos <= MAX_VIDEOS:
        raise UsageError(f"--videos {videos!r}: expected a whole number from 2 to {MAX_VIDEOS} (one video for "
                         "training, the last one for VideoRefBench)")
    if type(targets) is not int or not 1 <= targets <= len(COLOURS):
        raise UsageError(f"--targets {targets!r}: expected a whole number from 1 to {len(COLOURS)} (one colour each)")
    if motion not in ("free", "classes"):
        raise UsageError(f"--motion {motion!r}: expected free or classes")
    if len(size) != 2 or any(type(v) is not int or not MIN_SIZE <= v <= MAX_SIZE for v in size):
        raise UsageError(f"--size {'x'.join(map(str, size))}: expected WIDTHxHEIGHT, each from {MIN_SIZE} to {MAX_SIZE}")
    if type(feature_dim) is not int or not 1 <= feature_dim <= MAX_FEATURE_DIM:
        raise UsageError(f"--feature-dim {feature_dim!r}: expected a whole number from 1 to {MAX_FEATURE_DIM} "
                         "(1024 for CLIP ViT-L/14)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out}: is a file, expected a folder")
    for part in ("DATA_ROOT", "annotations"):
        existing = out / part
        if existing.exists() and not existing.is_dir():
            raise UsageError(f"{existing}: is a file, expected a folder", hint="choose another OUT")
        if existing.exists() and any(existing.iterdir()):
            if not overwrite:
                raise UsageError(f"{existing} already exists and is not empty", hint="pass --overwrite to replace it")
            _check_is_sample(existing, part)
    for part in ("DATA_ROOT", "annotations"):
        if (out / part).is_dir():
            shutil.rmtree(out / part)
    w = _Writer(out, seed, feature_dim)

    # Stage 1: LLaVA pretrain images + Valley clip features.
    stage1 = []
    for i in range(2):
        name = f"pretrain_{i:03d}.jpg"
        stage1.append({"id": f"llava_{i}", "image": name, "conversations": _conv("<image>\nDescribe the image briefly.", w.image(f"llava_image/{name}"))})
    for i in range(1):
        clip = f"valley_{i:03d}"
        w.feature(f"valley/{clip}.pkl")
        stage1.append({"id": clip, "video": f"{clip}.mp4", "video_clip": f"{clip}.pkl",
                       "conversations": _conv("<video>\nSummarise the video.", "A coloured box moves across a smooth background.")})
    w.annotation("stage1/pretrain.json", stage1)

    # Stage 2: instruct images, Video-ChatGPT features, image+video, several images, text-only.
    captions = [w.image(f"llava_image_tune/coco/tune_{i:03d}.jpg") for i in range(2)]
    w.feature("videochatgpt_tune/vcg_000.pkl")
    stage2 = [
        {"id": "tune_img", "image": "coco/tune_000.jpg", "conversations": _conv("<image>\nWhat is in the picture?", captions[0])
         + _conv("Is the background plain?", "No, it is a smooth colour gradient.")},
        {"id": "tune_multi", "image": ["coco/tune_000.jpg", "coco/tune_001.jpg"],
         "conversations": _conv("<image><image>\nCompare the two pictures.", f"First: {captions[0]} Second: {captions[1]}")},
        {"id": "tune_vid", "video": "vcg_000.mp4", "video_clip": "vcg_000.pkl",
         "conversations": _conv("<video>\nWhat happens in the video?", "A coloured box slides across the frame.")},
        {"id": "tune_vid_img", "video": "vcg_000.mp4", "video_clip": "vcg_000.pkl", "image": "coco/tune_001.jpg",
         "conversations": _conv("<video><image>\nDoes the picture appear in the video?", "It shows a similar coloured box.")},
    ]
    w.annotation("stage2/instruct.json", stage2)
    w.annotation("stage2/text_only.json", [
        {"id": "text_0", "conversations": _conv("What colour do you get by mixing red and blue?", "Purple.")},
        {"id": "text_1", "conversations": _conv("Name a shape with four equal sides.", "A square.")},
    ])

    # Stage 3 and VideoRefBench: HC-STVG videos (mp4 + frames + clip features), last one held out.
    hc = f"{ARTEMIS_DATA}/HC-STVG"
    train, bench, clips, described = [], [], [], []
    for v in range(videos):
        clip = f"hcstvg_{v:03d}"
        clips.append(clip)
        video = make_video(w.rng(f"video:{clip}"), N_FRAMES, size[0], size[1], n_targets=targets, motion=motion)
        atomic_write_bytes(w.root / hc / "videos" / f"{clip}.mp4", encode_mp4(video.frames))
        names = w.frames(f"{hc}/frames/{clip}", video, "{:05d}.jpg")
        w.feature(f"{hc}/clip_feature/{clip}.pkl")
        held_out = v == videos - 1
        records = _referring_records(w, "HC-STVG", clip, video, f"HC-STVG/frames/{clip}", names,
                                     with_question=held_out or v % 2 == 1, video_name=clip if held_out else None)
        (bench if held_out else train).extend(records)
        if not held_out:
            described.append({"id": f"{clip}_described", "video": f"{clip}.mp4",
                              "video_clip": f"{hc}/clip_feature/{clip}.pkl",  # from DATA_ROOT
                              "conversations": _conv("<video>\nWhat happens in the video?",
                                                     " ".join(t.motion() for t in video.targets))})
    w.annotation("stage3/hc_stvg_train.json", train)
    if motion == "classes":
        w.annotation("stage2/hcstvg_captions.json", described)
    w.annotation("videorefbench/hc_stvg_val.json", bench)

    # GOT-10k and MGIT: frame folders (not redistributed upstream) + their clip_feature folders.
    for source, clip, frame_root, pattern, file in (
        ("GOT-10k", "GOT-10k_Train_000001", "GOT-10k/data/full_data/train", "{:08d}.jpg", "got10k.json"),
        ("MGIT", "MGIT_001", "MGIT/MGIT-Train", "{:06d}.jpg", "mgit.json"),
    ):
        video = make_video(w.rng(f"video:{clip}"), 12, WIDTH, HEIGHT, n_targets=1)
        names = w.frames(f"{ARTEMIS_DATA}/{frame_root}/{clip}", video, pattern)
        w.feature(f"{ARTEMIS_DATA}/{source}/clip_feature/{clip}.pkl")
        w.annotation(f"stage3/{file}", _referring_records(w, source, clip, video, f"{frame_root}/{clip}", names, with_question=False))

    # The other VideoRef45K sources: a few frames each, so every layout folder is real and non-empty.
    for source in ("MeViS_release", "A2D_sentences", "VID-sentence", "LaSOT"):
        video = make_video(w.rng(f"video:{source}"), 3, WIDTH, HEIGHT, n_targets=1)
        w.frames(f"{ARTEMIS_DATA}/{source}/frames/{source.lower()}_000", video, "{:05d}.jpg")

    # Video QA (MSVD-QA) and Video-ChatGPT: questions about the HC-STVG clips, whose features live in
    # DATA_ROOT/Artemis_data/HC-STVG/clip_feature (pass that folder as --features).
    questions, answers = [], []
    for n, clip in enumerate(clips):
        questions.append({"video_name": clip, "question": "what moves in the video?", "question_id": f"msvd_{n}_0"})
        answers.append({"answer": "box", "question_id": f"msvd_{n}_0"})
        questions.append({"video_name": clip, "question": "how many boxes are there?", "question_id": f"msvd_{n}_1"})
        answers.append({"answer": "two", "question_id": f"msvd_{n}_1"})
    w.annotation("msvd_qa/test_q.json", questions)
    w.annotation("msvd_qa/test_a.json", answers)
    w.annotation("vcgbench/generic_qa.json", [{"video_name": c, "Q": "Describe the video in detail.", "A": "Two coloured boxes move across a smooth coloured background."} for c in clips])
    w.annotation("vcgbench/temporal_qa.json", [{"video_name": c, "Q": "What happens from the start to the end of the video?", "A": "The boxes slide steadily from their start positions to new ones."} for c in clips])
    w.annotation("vcgbench/consistency_qa.json", [{"video_name": c, "Q1": "How many boxes are in the video?", "Q2": "Count the moving boxes in the clip.", "A": "There are two boxes."} for c in clips])

    summary = SampleSummary(out=out, data_root=w.root, annotations=w.ann)
    for path in list(w.root.rglob("*")) + list(w.ann.rglob("*")):
        if path.is_file():
            summary.files += 1
            summary.bytes += path.stat().st_size
    summary.written = {
        "data_root": str(w.root), "annotations": str(w.ann),
        "videos": str(w.root / hc / "videos"), "qa_features": str(w.root / hc / "clip_feature"),
    }
    return summary
