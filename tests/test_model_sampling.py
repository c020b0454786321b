"""The 9-frame/box sampling shared by training and inference, and box normalisation."""

from __future__ import annotations

import random

import pytest

from artemis_cli.errors import InputError
from artemis_cli.model.sampling import crop_geometry, normalise_boxes, sample_roi_frames

BOX = [10, 20, 30, 40]


def record(n: int, lost: set[int] = frozenset()):
    frames = [f"{i:05d}.jpg" for i in range(n)]
    track = [[] if i in lost else [i, i + 1, i + 10, i + 11] for i in range(n)]
    return track, frames


def test_inference_takes_every_nth_tracked_frame():
    track, frames = record(40, lost={0, 1, 2, 3})  # 36 tracked: indices 4..39, interval 4
    out = sample_roi_frames(track, frames, key_frame_id="00007.jpg", key_frame_box=BOX)
    assert out.tracked_indices == [4, 8, 12, 16, 20, 24, 28, 32]
    assert out.frame_ids[0] == "00007.jpg" and out.boxes[0] == [10.0, 20.0, 30.0, 40.0]
    assert out.frame_ids[1:] == [frames[i] for i in out.tracked_indices]
    assert out.boxes[1] == [4.0, 5.0, 14.0, 15.0]
    assert len(out.frame_ids) == len(out.boxes) == 9 and out.key_index is None


def test_training_jitter_stays_within_a_quarter_interval_and_is_seeded():
    track, frames = record(80)  # interval 10, noise up to 2.5 -> int() in [-2, 2]
    seen = set()
    for seed in range(30):
        out = sample_roi_frames(track, frames, key_frame_id="00000.jpg", key_frame_box=BOX, jitter=True,
                                rng=random.Random(seed))
        picks = out.tracked_indices
        assert picks == sorted(picks) and len(picks) == 8
        start = picks[0]
        assert 0 <= start < 10
        for k, pick in enumerate(picks[1:], start=1):
            assert abs(pick - (start + 10 * k)) <= 2
        seen.add(tuple(picks))
        again = sample_roi_frames(track, frames, key_frame_id="00000.jpg", key_frame_box=BOX, jitter=True,
                                  rng=random.Random(seed))
        assert again == out
    assert len(seen) > 5  # jitter actually varies


def test_random_mode_and_few_tracked_frames():
    track, frames = record(20)
    out = sample_roi_frames(track, frames, key_frame_id="00000.jpg", key_frame_box=BOX, mode="random",
                            rng=random.Random(0))
    assert len(set(out.tracked_indices)) == 8 and out.tracked_indices == sorted(out.tracked_indices)
    track, frames = record(10, lost={0, 1, 2, 3, 4, 5, 6})  # 3 tracked -> last repeated
    out = sample_roi_frames(track, frames, key_frame_id="00000.jpg", key_frame_box=BOX)
    assert out.tracked_indices == [7, 8, 9, 9, 9, 9, 9, 9]


def test_missing_key_frame_draws_a_tracked_one():
    track, frames = record(30, lost={5})
    out = sample_roi_frames(track, frames, key_frame_id="", key_frame_box=[], rng=random.Random(3))
    assert out.key_index is not None and track[out.key_index]
    assert out.frame_ids[0] == frames[out.key_index]
    assert out.boxes[0] == [float(v) for v in track[out.key_index]]


def test_errors():
    track, frames = record(5, lost={0, 1, 2, 3, 4})
    with pytest.raises(InputError, match="no tracked frame"):
        sample_roi_frames(track, frames)
    with pytest.raises(InputError, match="track_list has 5 entries but frame_id has 4"):
        sample_roi_frames(track, frames[:4])


def test_box_normalisation_quirk_and_crop_correct():
    # a 448 x 224 frame: CLIP keeps the middle 224 x 224 square (x from 112 to 336)
    centre = [112, 0, 336, 224]
    assert normalise_boxes([centre], [(448, 224)]) == [[0.25, 0.0, 0.75, 1.0]]  # divided by w, h
    assert normalise_boxes([centre], [(448, 224)], crop_correct=True) == [[0.0, 0.0, 1.0, 1.0]]
    # outside the crop is clipped
    assert normalise_boxes([[0, 0, 56, 112]], [(448, 224)], crop_correct=True) == [[0.0, 0.0, 0.0, 0.5]]
    # the quirk divides every box by the key frame's size
    assert normalise_boxes([[0, 0, 100, 100], [0, 0, 100, 100]], [(200, 100), (400, 400)]) == \
        [[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 1.0]]
    # square frames: both agree
    assert normalise_boxes([BOX], [(320, 320)]) == normalise_boxes([BOX], [(320, 320)], crop_correct=True)


def test_crop_geometry_matches_the_clip_processor():
    import numpy as np
    from PIL import Image

    from artemis_cli.model.tiny import clip_image_processor

    # a white 40x30 rectangle at a known place in a 320x240 frame ends up where crop_geometry says
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[100:130, 200:240] = 255
    pixels = clip_image_processor()(Image.fromarray(frame), return_tensors="pt")["pixel_values"][0]
    (x1, y1, x2, y2), = normalise_boxes([[200, 100, 240, 130]], [(320, 240)], crop_correct=True)
    bright = (pixels.mean(0) > 0).nonzero()
    ys, xs = bright[:, 0].float(), bright[:, 1].float()
    assert abs(xs.min().item() / 224 - x1) < 0.02 and abs(xs.max().item() / 224 - x2) < 0.02
    assert abs(ys.min().item() / 224 - y1) < 0.02 and abs(ys.max().item() / 224 - y2) < 0.02
    assert crop_geometry(320, 240) == (298 / 320, 224 / 240, 37, 0)


def test_load_roi_inputs_reads_frames_and_normalises(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from artemis_cli.model.sampling import load_roi_inputs
    from artemis_cli.model.tiny import clip_image_processor

    track, frames = record(12)
    for name in frames:
        Image.fromarray(np.full((240, 320, 3), 128, dtype=np.uint8)).save(tmp_path / name)
    selection = sample_roi_frames(track, frames, key_frame_id=frames[0], key_frame_box=[32, 24, 160, 120])
    pixels, boxes = load_roi_inputs(tmp_path, selection, clip_image_processor())
    assert pixels.shape == (9, 3, 224, 224) and boxes.shape == (9, 4) and boxes.dtype == torch.float32
    # integer pixel boxes are divided in fp16, as published: 32 / 320 = 0.1 rounds to 0.0999755859375
    assert boxes[0].tolist() == [float(torch.tensor(0.1).half()), float(torch.tensor(0.1).half()), 0.5, 0.5]
    _, exact = load_roi_inputs(tmp_path, selection, clip_image_processor(), exact_boxes=True)
    assert exact[0].tolist() == pytest.approx([0.1, 0.1, 0.5, 0.5], abs=1e-8)
    _, corrected = load_roi_inputs(tmp_path, selection, clip_image_processor(), crop_correct=True)
    assert not torch.allclose(boxes, corrected)
    (tmp_path / frames[4]).unlink()
    with pytest.raises(InputError, match="frame not found"):
        load_roi_inputs(tmp_path, selection, clip_image_processor())
