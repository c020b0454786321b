"""`Referrer` for servers: answers streamed per request while batched (the pieces join to the answer, which
equals the answer not streamed), stop strings, samples, log-probabilities, the prompt's length counted
before any work, preparation that never waits for the model's lock, and a failed preparation that
leaves nothing in the caches."""

from __future__ import annotations

import threading
import time

import pytest

from artemis_cli.model.generation import DecodingSettings
from artemis_cli.ownvideo.prepare import Target
from artemis_cli.ownvideo.referrer import ContextLengthError, Query, Referrer
from ownvideo_helpers import video_file
from test_serve import input_sensitive

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
QUESTIONS = ("What is the <bbox> doing in this video?", "Where does the <bbox> go?")
GREEDY = DecodingSettings(max_new_tokens=24)


@pytest.fixture(scope="module")
def setup(tiny_artemis, tmp_path_factory):
    _, loaded = input_sensitive(tiny_artemis, tmp_path_factory.mktemp("streaming") / "artemis")
    path, video = video_file(tmp_path_factory.mktemp("video"), n_frames=12)
    referrer = Referrer(loaded=loaded, cache_dir=tmp_path_factory.mktemp("cache"))
    prepared = [referrer.prepare(Target(path, tuple(o.boxes[0]), 0)) for o in video.objects.values()]
    return referrer, prepared, (path, video)


def test_each_answer_of_a_batch_streams_in_pieces_that_join_to_it(setup):
    referrer, prepared, _ = setup
    cases = [(p, q) for p in prepared for q in QUESTIONS]
    plain = referrer.ask_many([(p, q, ()) for p, q in cases], GREEDY)
    pieces: list[list[str]] = [[] for _ in cases]
    streamed = referrer.ask_many([Query(p, q, on_text=pieces[i].append) for i, (p, q) in enumerate(cases)], GREEDY)
    assert [a.answer for a in streamed] == [a.answer for a in plain]
    assert ["".join(p) for p in pieces] == [a.answer for a in plain]
    assert len({a.answer for a in plain}) > 1 and max(len(p) for p in pieces) > 2  # really in pieces
    one: list[str] = []
    answer = referrer.ask(prepared[0], QUESTIONS[0], decoding=GREEDY, on_text=one.append)
    assert answer.answer == "".join(one) and answer.to_json()["answer"] == answer.answer  # (ask --json writes it)


def test_stop_strings_samples_and_log_probabilities(setup):
    referrer, prepared, _ = setup
    plain = referrer.ask(prepared[0], QUESTIONS[0], decoding=GREEDY)
    assert plain.finish_reason in ("stop", "length")
    stop = plain.answer[len(plain.answer) // 2:][:2]
    pieces: list[str] = []
    cut = referrer.ask(prepared[0], QUESTIONS[0], decoding=GREEDY, stop=[stop], on_text=pieces.append)
    assert cut.answer == plain.answer[:plain.answer.index(stop)].strip() and cut.finish_reason == "stop"
    assert "".join(pieces) == cut.answer and cut.completion_tokens < plain.completion_tokens
    sampled = DecodingSettings(max_new_tokens=12, sample=True, temperature=1.0, seed=3)
    samples = referrer.ask_many([Query(prepared[0], QUESTIONS[0], sample=k) for k in range(3)], sampled)
    assert samples[0].answer == referrer.ask(prepared[0], QUESTIONS[0], decoding=sampled).answer
    assert len({s.answer for s in samples}) > 1 and len({tuple(s.frames_used) for s in samples}) == 1
    [with_logprobs] = referrer.ask_many([Query(prepared[0], QUESTIONS[0], top_logprobs=2)], GREEDY)
    assert with_logprobs.answer == plain.answer and len(with_logprobs.logprobs) == plain.completion_tokens
    entry = with_logprobs.logprobs[0]
    assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and len(entry["top_logprobs"]) == 2
    assert entry["top_logprobs"][0]["logprob"] == pytest.approx(entry["logprob"])  # greedy took the likeliest


def test_the_prompt_length_is_known_before_any_work_and_a_prompt_too_long_is_refused(setup):
    referrer, prepared, _ = setup
    history = [(QUESTIONS[0], "It walks to the left.")]
    for question, past, system in ((QUESTIONS[0], (), None), ("And then?", history, None),
                                   (QUESTIONS[1], (), "Answer in one word.")):
        [answer] = referrer.ask_many([Query(prepared[0], question, history=past, system=system)], GREEDY)
        assert referrer.count_prompt_tokens(question, past, system) == answer.prompt_tokens
    long_history = [(QUESTIONS[0], "word " * 1500)]
    assert referrer.count_prompt_tokens("And then?", long_history) > referrer.context_length
    [refused] = referrer.ask_many([Query(prepared[0], "And then?", history=long_history)], GREEDY)
    assert isinstance(refused, ContextLengthError) and "maximum" in refused.message
    with pytest.raises(ContextLengthError, match="maximum context length is 4096 tokens. However, you requested "
                                                 "4200 tokens"):
        referrer.check_context(3000, 1200)
    with pytest.raises(ContextLengthError, match="maximum prompt length is 3072"):  # tokenizer_model_max_length
        referrer.check_context(3100, 10)


def test_preparing_a_new_video_does_not_wait_for_the_model(setup, tmp_path):
    referrer, _, _ = setup
    path, video = video_file(tmp_path, seed=1, n_frames=8)
    held, release = threading.Event(), threading.Event()

    def generate_forever():  # what a long batch does: hold the model's lock
        with referrer._lock:
            held.set()
            release.wait(60)

    thread = threading.Thread(target=generate_forever)
    thread.start()
    try:
        held.wait(10)
        start = time.perf_counter()
        prepared = referrer.prepare(Target(path, tuple(next(iter(video.objects.values())).boxes[0]), 0))
        assert prepared.record["track_list"] and thread.is_alive() and time.perf_counter() - start < 60
    finally:
        release.set()
        thread.join(10)


def test_a_preparation_that_fails_or_is_stopped_leaves_nothing_in_the_caches(setup, tmp_path):
    referrer, _, _ = setup
    fresh = Referrer(loaded=referrer.loaded, cache_dir=tmp_path / "cache")
    path, video = video_file(tmp_path, seed=2, n_frames=16)
    box = tuple(next(iter(video.objects.values())).boxes[0])

    class Stop(Exception):
        pass

    def stop_at_frame_6(frame: int) -> None:
        if frame >= 6:
            raise Stop("deadline")

    with pytest.raises(Stop):
        fresh.prepare(Target(path, box, 0), check=stop_at_frame_6)
    time.sleep(1.0)  # the clip feature extracted meanwhile stops at its next batch, then removes its file
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    prepared = fresh.prepare(Target(path, box, 0))  # and the same target then prepares normally
    assert (tmp_path / "cache" / prepared.record["clip_path"]).is_file()
