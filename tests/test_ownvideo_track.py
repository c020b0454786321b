"""Trackers on generated videos with known boxes (scale change, partial occlusion, an object that
leaves the frame), SAM 2 plumbing on a shrunken random model, frame reading with a stride, previews."""

from __future__ import annotations

import numpy as np
import pytest

from artemis_cli.data.synthetic_tracking import box_iou, make_tracking_video
from artemis_cli.ownvideo.trackers import clip_box, mask_box
from artemis_cli.ownvideo.tracking import track_boxes


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video():
    return make_tracking_video(seed=0, n_frames=40, width=320, height=180)


def scores(video, name: str, key: int, tracker: str):
    truth = video.objects[name].boxes
    boxes = track_boxes(list(video.frames), key, truth[key], tracker=tracker)
    visible = [i for i, box in enumerate(truth) if box is not None]
    gone = [i for i, box in enumerate(truth) if box is None]
    ious = [box_iou(boxes[i], truth[i]) if boxes[i] is not None else 0.0 for i in visible]
    return boxes, float(np.mean(ious)), [i for i in gone if boxes[i] is not None]


def test_generated_video_has_what_the_accuracy_check_needs(video):
    walker, leaver = video.objects["walker"].boxes, video.objects["leaver"].boxes
    assert all(box is not None for box in walker)
    assert (walker[-1][2] - walker[-1][0]) > 1.4 * (walker[0][2] - walker[0][0])  # scale change
    x1, y1, x2, y2 = video.occluder
    assert any(box[0] < x1 < box[2] for box in walker) and any(box[0] < x2 < box[2] for box in walker)  # occluded
    gone = [i for i, box in enumerate(leaver) if box is None]
    assert gone and gone == list(range(gone[0], len(leaver)))  # leaves and stays out
    assert make_tracking_video(seed=0, n_frames=40, width=320, height=180).frames.tobytes() == video.frames.tobytes()


@pytest.mark.slow
def test_csrt_follows_scale_change_and_occlusion_and_marks_the_object_gone(video):
    boxes, iou, wrongly_kept = scores(video, "walker", 20, "csrt")  # forward and backward from the middle
    assert iou >= 0.8, iou
    assert boxes[20] == [round(v, 2) for v in video.objects["walker"].boxes[20]]
    boxes, iou, wrongly_kept = scores(video, "leaver", 0, "csrt")
    assert iou >= 0.8, iou
    assert wrongly_kept == []  # every frame where it is gone is []
    assert boxes[-1] is None


def test_kcf_tracks_the_easy_target(video):
    boxes, iou, _ = scores(video, "leaver", 0, "kcf")
    assert iou >= 0.6 and len(boxes) == 40


def test_box_checks():
    assert clip_box([-5, 10, 45, 50], 100, 100) == [0.0, 10.0, 45.0, 50.0]  # 90% inside: clipped
    assert clip_box([-30, 10, 20, 50], 100, 100) is None  # 40% inside: lost
    assert clip_box([10, 10, 11, 50], 100, 100) is None  # collapsed
    mask = np.zeros((20, 30), dtype=bool)
    mask[4:9, 10:16] = True
    assert mask_box(mask) == [10.0, 4.0, 16.0, 9.0] and mask_box(np.zeros((4, 4), bool)) is None


@pytest.mark.slow
def test_sam2_propagates_a_box_prompt_with_a_shrunken_random_model(tmp_path):
    import torch

    from artemis_cli.ownvideo.trackers import load_sam2
    from ownvideo_helpers import save_tiny_sam2

    folder = save_tiny_sam2(tmp_path / "sam2")
    model, processor = load_sam2(str(folder), "cpu", torch.float32)
    small = make_tracking_video(seed=1, n_frames=5, width=96, height=64)
    key_box = small.objects["walker"].boxes[2]
    seen = []
    boxes = track_boxes(list(small.frames), 2, key_box, tracker="sam2", sam2=(model, processor),
                        progress=seen.append)
    assert len(boxes) == 5 and boxes[2] == [round(v, 2) for v in key_box]
    for box in boxes:  # random weights: any mask, but each box is a valid box inside the frame, or lost
        assert box is None or (0 <= box[0] < box[2] <= 96 and 0 <= box[1] < box[3] <= 64)
    assert seen and seen == sorted(seen) and seen[-1] <= 1.0
    with pytest.raises(Exception, match="cannot load a SAM 2"):
        load_sam2(str(tmp_path), "cpu", torch.float32)


def test_a_stride_tracks_every_kth_frame_and_the_key_frame_and_frames_are_read_one_by_one(tmp_path):
    from artemis_cli.data.synthetic_tracking import save_video
    from artemis_cli.ownvideo.tracking import KeyBox, track_video_keys
    from artemis_cli.ownvideo.video import iter_selected, probe

    small = make_tracking_video(seed=2, n_frames=11, width=160, height=96)
    box = tuple(small.objects["walker"].boxes[5])
    for path in (save_video(small, tmp_path / "v.mp4"), save_video(small, tmp_path / "frames")):
        info = probe(path)
        assert info.frame_size == (160, 96) and info.header_frames == 11
        result = track_video_keys(info, [KeyBox(5, box)], stride=4)
        assert result.indices == [0, 4, 5, 8] and result.num_frames == 11 and result.frame_size == (160, 96)
        picked = dict(iter_selected(info, [8, 0]))
        assert sorted(picked) == [0, 8] and picked[8].shape == (96, 160, 3)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".png"])
def test_previews(tmp_path, suffix):
    from PIL import Image

    from artemis_cli.ownvideo.preview import Preview
    from artemis_cli.ownvideo.record import build_record

    small = make_tracking_video(seed=3, n_frames=6, width=96, height=64)
    boxes = small.objects["walker"].boxes[:5] + [None]
    record = build_record(video_name="v", frame_path="frames", clip_path="v.pkl", indices=range(6), boxes=boxes,
                          num_frames=6, key_frame=1, key_box=boxes[1])
    track = {"frames": list(range(6)), "states": ["tracked", "key", "tracked", "tracked", "tracked", "lost"],
             "confidence": [0.9, 1.0, 0.9, 0.5, 0.9, 0.1]}
    preview = Preview(tmp_path / f"preview{suffix}", record, list(range(6)), [1], track)
    for index, frame in enumerate(small.frames):  # one at a time, as they are decoded
        preview.add(index, frame)
    out = preview.close()
    if suffix == ".mp4":
        import av

        with av.open(str(out)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 6
        x1, y1, x2, _ = (int(round(v)) for v in boxes[1])
        edge = np.abs(frames[1][y1, x1:x2].astype(int) - small.frames[1][y1, x1:x2].astype(int)).mean()
        inside = np.abs(frames[1][y1 + 6, x1 + 4:x2 - 4].astype(int) - small.frames[1][y1 + 6, x1 + 4:x2 - 4]).mean()
        assert edge > 40 > inside  # the key box's top edge is drawn, its inside left alone
        border = frames[5][30, :3].astype(int)  # the dropped frame: a red border
        assert border[:, 0].mean() > 150 and border[:, 1].mean() < 100
    else:
        with Image.open(out) as image:
            assert image.format == suffix[1:].upper()
            if suffix == ".gif":
                assert image.n_frames == 6
            else:
                assert image.size[0] == 4 * 240  # 5 tracked frames: a 4-column sheet


def test_read_ahead_keeps_order_raises_in_place_and_stops_with_its_caller():
    import threading

    from artemis_cli.errors import InputError
    from artemis_cli.ownvideo.video import read_ahead

    assert list(read_ahead(range(50), lambda x: x * 2, depth=3)) == [x * 2 for x in range(50)]

    def damaged():
        yield 1
        yield 2
        raise InputError("frame 3 is damaged")

    got = []
    with pytest.raises(InputError, match="frame 3 is damaged"):
        for value in read_ahead(damaged(), lambda x: x):
            got.append(value)
    assert got == [1, 2]  # what came before the error, in order
    closed, produced = threading.Event(), []

    def endless():
        try:
            number = 0
            while True:
                produced.append(number)
                yield number
                number += 1
        finally:
            closed.set()

    reader = read_ahead(endless(), lambda x: x, depth=2)
    assert next(reader) == 0
    reader.close()  # the caller stops: the thread stops and closes the decoder it was reading
    assert closed.wait(5) and len(produced) < 10
