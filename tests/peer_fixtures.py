"""Small fixtures in each peer benchmark's published format, written on the fly (never downloaded).

`write_peer_data(root)` writes, under `root`:
- ``videos/clip_a.mp4``, ``videos/clip_b.mp4`` (12 frames, 64x48, a moving white square) and
  ``videos/DAVIS/JPEGImages/480p/bird/00000.jpg...`` (a frame folder, as Bench-Q's DAVIS videos);
- ``features/<video name>.npy``: clip features [8, 64] (the tiny model's width);
- ``VideoRefer-Bench-D.json`` (COCO RLE masks on 6 of the 12 frames, one null), ``VideoRefer-Bench-Q.json``
  (a one-object and a two-object question), ``rcap_test.jsonl`` + ``metadata_test.jsonl`` (PLM-VideoBench).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FRAMES, FEATURE_DIM = 64, 48, 12, 64


def square_box(frame: int) -> list[int]:
    x = 4 + 3 * frame
    return [x, 10, x + 16, 30]


def frames_rgb() -> list[np.ndarray]:
    out = []
    for frame in range(FRAMES):
        image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        image[:, :, 2] = 40 + 10 * frame
        x1, y1, x2, y2 = square_box(frame)
        image[y1:y2, x1:x2] = 255
        out.append(image)
    return out


def write_mp4(path: Path) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=6)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for image in frames_rgb():
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(frames_rgb()):
        Image.fromarray(image).save(folder / f"{index:05d}.jpg")
    return folder


def masks(frames: list[int], null: tuple[int, ...] = ()) -> dict:
    from artemis_cli.data.masks import encode_box_mask

    return {str(f): {"segmentation": None if f in null else encode_box_mask(square_box(f), HEIGHT, WIDTH)}
            for f in frames}


@dataclass
class PeerData:
    root: Path
    videos: Path
    features: Path
    bench_d: Path
    bench_q: Path
    rcap: Path
    metadata: Path


def write_peer_data(root: Path, seed: int = 0) -> PeerData:
    rng = np.random.default_rng(seed)
    videos, features = root / "videos", root / "features"
    features.mkdir(parents=True)
    for name in ("clip_a", "clip_b"):
        write_mp4(videos / f"{name}.mp4")
    write_mp4(videos / "sav_000001.mp4")
    write_frame_folder(videos / "DAVIS" / "JPEGImages" / "480p" / "bird")
    for name in ("clip_a", "clip_b", "sav_000001", "bird"):
        np.save(features / f"{name}.npy", rng.standard_normal((8, FEATURE_DIM)).astype(np.float32))
    annotated = [0, 2, 4, 6, 8, 10]
    bench_d = root / "VideoRefer-Bench-D.json"
    bench_d.write_text(json.dumps([
        {"id": 0, "video": "clip_a.mp4", "caption": "A white square slides to the right.", "frame_idx": "4",
         "annotation": [masks(annotated, null=(10,))]},
        {"id": 1, "video": "clip_b.mp4", "caption": "A bright block moves across a blue field.", "frame_idx": "2",
         "annotation": [masks(annotated)]},
    ]))
    bench_q = root / "VideoRefer-Bench-Q.json"
    bench_q.write_text(json.dumps([
        {"id": 0, "video": "DAVIS/JPEGImages/480p/bird", "Question": "Where does <object1><region> move?",
         "type": "Sequential Questions", "options": ["(A) to the right", "(B) to the left"],
         "Answer": "(A) to the right", "frame_idx": "2", "annotation": [masks(annotated)]},
        {"id": 1, "video": "DAVIS/JPEGImages/480p/bird", "Question": "Is <object1><region> above <object2><region>?",
         "type": "Relationship Questions", "options": ["(A) yes", "(B) no", "(C) they touch"], "Answer": "(B) no",
         "frame_idx": "4", "annotation": [masks(annotated), masks([4, 6])]},
    ]))
    rcap = root / "rcap_test.jsonl"
    rcap.write_text("".join(json.dumps(item) + "\n" for item in [
        {"uid": 101, "video": "sav_000001.mp4", "masklet_id": 0, "total_frames": FRAMES,
         "caption": "The square drifts right and keeps its size.", "start_frame": 2, "end_frame": 9},
        {"uid": 102, "video": "sav_000001.mp4", "masklet_id": 1, "total_frames": FRAMES,
         "caption": "A second object stays still.", "start_frame": 0, "end_frame": 5},
    ]))
    metadata = root / "metadata_test.jsonl"
    metadata.write_text("".join(json.dumps(line) + "\n" for line in [
        {"video": "sav_000001.mp4", "masklet_id": 0, "bbox": {str(f): square_box(f) for f in range(FRAMES)}},
        {"video": "sav_000001.mp4", "masklet_id": 1, "bbox": {str(f): ([] if f < 3 else [2, 2, 12, 12])
                                                              for f in range(FRAMES)}},
    ]))
    return PeerData(root, videos, features, bench_d, bench_q, rcap, metadata)
