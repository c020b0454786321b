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
from artemis_cli.ownvideo.prepare import Target
from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION, Answer, Referrer
from ownvideo_helpers import MAX_NEW, sharpened, tracked_frames, video_file

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
    assert track["key_frame"] == 5 and track["frames"] == tracked_frames(20, (5,)) and len(track["boxes"]) == len(track["frames"])
    assert track["boxes"][track["frames"].index(5)] == [round(v, 2) for v in target_of(clip, frame=5).box]


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


@pytest.mark.slow
def test_the_model_loads_while_the_target_is_tracked_and_the_result_is_the_plain_orders(sharp, clip, tmp_path,
                                                                                         monkeypatch):
    """`ask`'s one-shot path: the loader thread waits until tracking has begun (a sequential load-then-track
    would time out here), and the prepared target and its answer equal `Referrer.prepare` + `ask`."""
    import threading

    from artemis_cli.ownvideo.ask import ModelOptions, prepare_while_loading

    tracking = threading.Event()
    load = ModelOptions.referrer

    def load_once_tracking(self, loaded=None):
        if not tracking.wait(60):
            raise AssertionError("the model was loaded before the tracking began")
        return load(self, loaded)

    monkeypatch.setattr(ModelOptions, "referrer", load_once_tracking)
    options = ModelOptions(model=str(sharp[0]), device="cpu", cache_dir=tmp_path / "cache")
    stages = []

    def progress(stage, fraction):
        stages.append((stage, threading.current_thread().name))
        if stage == "track":
            tracking.set()

    referrer, prepared, ready = prepare_while_loading(options, target_of(clip), progress=progress)
    assert stages[0] == ("track", threading.main_thread().name)
    assert prepared.timings["track"] > 0 and prepared.timings["features"] > 0 and not prepared.cache_hit
    plain = Referrer(loaded=sharp[1], cache_dir=tmp_path / "plain")
    expected = plain.prepare(target_of(clip))
    assert prepared.record == expected.record and prepared.track == expected.track
    assert referrer.ask(prepared, decoding=GREEDY).answer == plain.ask(expected, decoding=GREEDY).answer
    again = prepare_while_loading(options, target_of(clip))[1]  # both cached now
    assert again.cache_hit and again.record == prepared.record


@pytest.mark.slow
def test_a_model_that_fails_to_load_stops_the_tracking_with_its_error(clip, tmp_path, monkeypatch):
    from artemis_cli.data.synthetic_tracking import write_long_video
    from artemis_cli.ownvideo.ask import ModelOptions, prepare_while_loading

    long_video = tmp_path / "long.mp4"
    truth = write_long_video(long_video, seconds=20, width=320, height=180, fps=30)
    options = ModelOptions(model=str(tmp_path / "no-such-model"), device="cpu", cache_dir=tmp_path / "cache",
                           stride=1)
    began = time.perf_counter()
    with pytest.raises(UsageError, match="--model .*no-such-model: no such folder"):
        prepare_while_loading(options, Target(long_video, tuple(truth.boxes[0]), 0))
    assert time.perf_counter() - began < 1  # a missing folder: refused before anything starts

    def broken(self, loaded=None):
        raise UsageError("--model broken: cannot load it")

    monkeypatch.setattr(ModelOptions, "referrer", broken)  # a loader that fails while the target is tracked
    options = ModelOptions(model="someone/some-model", device="cpu", cache_dir=tmp_path / "cache", stride=1)
    began = time.perf_counter()
    with pytest.raises(UsageError, match="cannot load it"):
        prepare_while_loading(options, Target(long_video, tuple(truth.boxes[0]), 0))
    assert time.perf_counter() - began < 10  # 600 frames to track: stopped long before the end
    assert not list((tmp_path / "cache").glob("tracks/*/track.json"))  # nothing half-done was kept

    def never(self, loaded=None):
        raise AssertionError("a bad box must be refused before the model loads")

    monkeypatch.setattr(ModelOptions, "referrer", never)
    path, _ = clip
    with pytest.raises(UsageError, match="outside frame 0"):
        prepare_while_loading(options, Target(path, (10, 10, 400, 50), 0))


@pytest.mark.slow
def test_the_roi_frames_are_kept_from_the_tracking_pass_as_a_second_decode_would_write_them(sharp, clip, tmp_path,
                                                                                              monkeypatch):
    from artemis_cli.ownvideo import prepare as module
    from artemis_cli.ownvideo import video

    decodes = []
    iter_frames = video.iter_frames

    def counted(*args, **kwargs):
        decodes.append(kwargs.get("stop_after"))
        return iter_frames(*args, **kwargs)

    monkeypatch.setattr(video, "iter_frames", counted)  # the decodes after the tracking pass (`iter_selected`)
    kept = Referrer(loaded=sharp[1], cache_dir=tmp_path / "kept").prepare(target_of(clip))
    assert decodes == []  # every RoI frame was kept as the tracking pass went by
    monkeypatch.setattr(module, "likely_roi_frames", lambda *args: set())
    again = Referrer(loaded=sharp[1], cache_dir=tmp_path / "decoded").prepare(target_of(clip))
    assert len(decodes) == 1 and decodes[0] is not None  # nothing kept: decoded once more up to the last one
    assert kept.record == again.record
    folder = kept.record["frame_path"]
    written, decoded = (sorted((tmp_path / name / folder).iterdir()) for name in ("kept", "decoded"))
    assert len(written) >= 5 and [p.name for p in written] == [p.name for p in decoded]
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in decoded]
    info = video.probe(clip[0])
    some = {3: dict(video.iter_selected(info, [3]))[3]}  # kept: frame 3; decoded: the others
    mixed = list(module._roi_frames(info, [0, 3, 7, 9], some, limits=video.DEFAULT_LIMITS, check=None))
    plain = list(video.iter_selected(info, [0, 3, 7, 9]))
    assert [n for n, _ in mixed] == [0, 3, 7, 9] and all((a == b).all() for (_, a), (_, b) in zip(mixed, plain))
