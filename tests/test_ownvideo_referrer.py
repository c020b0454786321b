"""`Referrer` (the own-video API): prepare + ask on a generated video with a sharpened tiny Artemis.

The answer under the default question must equal `infer videorefbench` on the record `track_video`
wrote; a second question about the same video must cost no tracking or feature extraction.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from artemis_cli.errors import InputError, UsageError
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Answer, Referrer, Target
from ownvideo_helpers import MAX_NEW, sharpened, video_file

GREEDY = DecodingSettings(max_new_tokens=MAX_NEW)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sharp(tiny_artemis, tmp_path_factory):
    return sharpened(tiny_artemis, tmp_path_factory.mktemp("sharp") / "artemis")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return video_file(tmp_path_factory.mktemp("video"), n_frames=20)


@pytest.fixture(scope="module")
def referrer(sharp, tmp_path_factory):
    return Referrer(loaded=sharp[1], cache_dir=tmp_path_factory.mktemp("cache"))


def target_of(clip, name: str = "walker", frame: int = 0) -> Target:
    path, video = clip
    return Target(path, tuple(video.objects[name].boxes[frame]), frame)


@pytest.mark.slow
def test_ask_equals_infer_videorefbench_on_the_record_track_wrote(referrer, clip, tmp_path):
    from artemis_cli.infer import InferConfig, infer
    from artemis_cli.ownvideo.track import TrackConfig, track_video

    target = target_of(clip, frame=3)
    summary = track_video(TrackConfig(video=target.video, box=target.box, frame=3, output=tmp_path / "track.json",
                                      clip_model=referrer.clip_model, cache_dir=referrer.cache_dir, device="cpu"))
    out = tmp_path / "preds.jsonl"
    result = infer(InferConfig(task={"kind": "videorefbench", "annotations": summary.output, "data_root": tmp_path},
                               model="unused", output=out, decoding=GREEDY, device="cpu", show_progress=False),
                   loaded=referrer.loaded)
    assert result.done == 1 and result.failed == 0
    pred = json.loads(out.read_text())["pred"]

    prepared = referrer.prepare(target)
    answer = referrer.ask(prepared, decoding=GREEDY)
    assert isinstance(answer, Answer) and answer.answer == pred and answer.completion_tokens > 0
    assert answer.question == DEFAULT_QUESTION
    assert answer.frames_used[0] == 3 and len(answer.frames_used) == 9
    assert answer.frames_used[1:] == sorted(answer.frames_used[1:])
    # The request itself is infer's, tensor for tensor (so the equality does not hinge on the tiny model).
    from artemis_cli.data.benchmarks import videorefbench_samples
    from artemis_cli.infer.tasks import PromptOptions, build_requests

    theirs = build_requests(videorefbench_samples(summary.output, tmp_path)[0], referrer.loaded, PromptOptions(), 0)[0]
    ours = referrer._build(prepared, DEFAULT_QUESTION, [], GREEDY.resolved()).request
    assert ours.input_ids == theirs.input_ids and (ours.seed, ours.roi_seed) == (theirs.seed, theirs.roi_seed)
    assert torch.equal(ours.roi_frames, theirs.roi_frames) and torch.equal(ours.roi_boxes, theirs.roi_boxes)
    assert torch.equal(ours.media[0], theirs.media[0])
    other = referrer._build(referrer.prepare(target_of(clip, "leaver", 0)), DEFAULT_QUESTION, [], GREEDY).request
    assert not torch.equal(other.roi_boxes, ours.roi_boxes)


def test_second_question_costs_no_tracking_or_extraction(referrer, clip, monkeypatch):
    first = referrer.prepare(target_of(clip, frame=5))
    assert first.timings["track"] > 0 and not first.cache_hit
    import artemis_cli.features.pipeline as pipeline
    import artemis_cli.ownvideo.trackers as trackers

    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not track or extract")

    monkeypatch.setattr(pipeline, "run_loop", refuse)
    monkeypatch.setattr(trackers.OpenCVTracker, "propose", refuse)
    start = time.perf_counter()
    again = referrer.prepare(target_of(clip, frame=5))
    answer = referrer.ask(again, "How does the <bbox> move?", decoding=GREEDY)
    seconds = time.perf_counter() - start
    assert again.cache_hit and again.timings == {"decode": 0.0, "track": 0.0, "frames": 0.0, "features": 0.0}
    assert again.record == first.record
    assert answer.answer and seconds < 3.0
    track = again.track_json()
    assert track["key_frame"] == 5 and len(track["frames"]) == len(track["boxes"]) == 20
    assert track["boxes"][5] == [round(v, 2) for v in target_of(clip, frame=5).box]


@pytest.mark.slow
def test_ask_many_is_one_batch_equal_to_asking_alone_with_errors_in_their_slots(referrer, clip):
    prepared = referrer.prepare(target_of(clip))
    items = [(prepared, DEFAULT_QUESTION, ()), (prepared, "no box here", ()),
             (prepared, "How big is the <bbox>?", ()),
             (prepared, "And its colour?", [("How big is the <bbox>?", "small")])]
    results = referrer.ask_many(items, GREEDY)
    assert isinstance(results[1], UsageError) and "exactly one <bbox>" in results[1].message
    for index in (0, 2, 3):
        alone = referrer.ask(items[index][0], items[index][1], history=items[index][2], decoding=GREEDY)
        assert results[index].answer == alone.answer
    assert results[3].prompt_tokens > results[2].prompt_tokens  # the history is in the prompt


def test_follow_up_turns_are_rendered_in_the_template(referrer, clip, monkeypatch):
    import artemis_cli.model.conversation as conversation

    prompts = []
    original = conversation.tokenize_prompt
    monkeypatch.setattr(conversation, "tokenize_prompt", lambda text, tok: prompts.append(text) or original(text, tok))
    prepared = referrer.prepare(target_of(clip))
    referrer.ask(prepared, "Is it still there?", history=[("What is the <bbox> doing?", "It walks.")], decoding=GREEDY)
    prompt = prompts[-1]
    assert prompt.endswith("USER: <image>\nWhat is the <bbox> doing? This is the region's video tracking list: "
                           "<bbox><bbox><bbox><bbox> ASSISTANT: It walks.</s>USER: Is it still there? ASSISTANT:")
    assert prompt.count("<image>") == 1
    with pytest.raises(UsageError, match="follow-up"):
        referrer.ask(prepared, "Is the <bbox> there?", history=[("What is the <bbox> doing?", "It walks.")])


def test_bad_targets(referrer, clip, tmp_path):
    path, video = clip
    with pytest.raises(UsageError, match="outside frame 0"):
        referrer.prepare(Target(path, (10, 10, 400, 50), 0))
    with pytest.raises(UsageError, match="x1 < x2"):
        referrer.prepare(Target(path, (50, 10, 40, 50), 0))
    with pytest.raises(UsageError, match="has 20 frame"):
        referrer.prepare(Target(path, (10, 10, 40, 50), 20))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2000)
    with pytest.raises(InputError, match="cannot decode"):
        referrer.prepare(Target(broken, (10, 10, 40, 50), 0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        referrer.prepare(Target(tmp_path / "empty", (10, 10, 40, 50), 0))
    with pytest.raises(UsageError, match="no such video"):
        referrer.prepare(Target(tmp_path / "missing.mp4", (10, 10, 40, 50), 0))
    with pytest.raises(UsageError, match="--tracker-model"):
        Referrer(loaded=referrer.loaded, tracker="sam2", cache_dir=tmp_path)
    with pytest.raises(UsageError, match="--quantize"):
        Referrer(loaded=referrer.loaded, quantize="int3", cache_dir=tmp_path)


def test_a_known_target_reuses_its_inputs_and_rois_with_unchanged_answers(referrer, clip, monkeypatch):
    prepared = referrer.prepare(target_of(clip, frame=2))
    first = referrer.ask(prepared, "How fast is the <bbox>?", decoding=GREEDY)
    model = referrer.loaded.model
    calls = []
    original = model.encode_rois
    monkeypatch.setattr(model, "encode_rois", lambda *a, **k: calls.append(a) or original(*a, **k))
    again = referrer.ask(prepared, "How fast is the <bbox>?", decoding=GREEDY)
    other = referrer.ask(prepared, "What colour is the <bbox>?", decoding=GREEDY)
    assert calls == []  # neither the tower nor the RoI module ran again for this target
    assert again.answer == first.answer
    fresh = Referrer(loaded=referrer.loaded, cache_dir=referrer.cache_dir)  # empty input / RoI caches
    monkeypatch.setattr(model, "encode_rois", original)
    assert fresh.ask(fresh.prepare(target_of(clip, frame=2)), "What colour is the <bbox>?",
                     decoding=GREEDY).answer == other.answer
