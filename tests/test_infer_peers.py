"""`artemis infer videorefer-d | videorefer-q | plm-rcap` on fixtures in the published formats, then
`judge gpt` (against the local fake OpenAI server) and `score`: each peer benchmark end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.benchmarks import BENCHMARKS
from artemis_cli.infer.tasks import PromptOptions, build_requests
from judge_server import FakeJudgeServer
from peer_fixtures import square_box, write_peer_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = ["--max-new-tokens", "4", "--batch-size", "2", "--device", "cpu"]


def invoke(args: list) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    return write_peer_data(tmp_path_factory.mktemp("peers"))


def inputs(peers, benchmark: str) -> list:
    common = ["--videos", peers.videos, "--features", peers.features]
    return {"videorefer-d": ["--annotations", peers.bench_d, *common],
            "videorefer-q": ["--annotations", peers.bench_q, *common],
            "plm-rcap": ["--annotations", peers.rcap, "--metadata", peers.metadata, *common]}[benchmark]


@pytest.fixture(scope="module")
def predictions(peers, tiny_artemis_dir, tmp_path_factory):
    """Each benchmark run once by the CLI on the tiny model: {benchmark: (result, output path)}."""
    out = tmp_path_factory.mktemp("preds")
    runs = {}
    for benchmark in ("videorefer-d", "videorefer-q", "plm-rcap"):
        path = out / f"{benchmark}.jsonl"
        result = invoke(["infer", benchmark, *inputs(peers, benchmark), "--model", tiny_artemis_dir, "-o", path,
                         *RUN, "--json"])
        runs[benchmark] = (result, path)
    return runs


@pytest.mark.parametrize("benchmark, ids", [("videorefer-d", ["0", "1"]), ("videorefer-q", ["0", "1"]),
                                            ("plm-rcap", ["101", "102"])])
def test_infer_writes_the_prediction_lines(predictions, benchmark, ids):
    result, path = predictions[benchmark]
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["done"] == 2 and summary["failed"] == 0
    records = lines(path)
    assert [r["id"] for r in records] == ids
    assert all(list(r) == list(BENCHMARKS[benchmark].prediction.fields) and isinstance(r["pred"], str)
               for r in records)
    manifest = json.loads(path.with_name(path.stem + ".manifest.json").read_text())
    assert manifest["settings"]["task"]["kind"] == benchmark


def test_bench_q_lines_carry_the_question_options_and_regions(predictions):
    records = lines(predictions["videorefer-q"][1])
    assert [r["n_regions"] for r in records] == [1, 2]
    assert records[1]["options"] == ["(A) yes", "(B) no", "(C) they touch"] and records[1]["answer"] == "(B) no"
    assert records[1]["type"] == "Relationship Questions"


def test_roi_inputs_come_from_the_masks_and_the_video(peers, tiny_artemis):
    """The RoI boxes are the masks' boxes divided by the frame size; the RoI pixels are the decoded frames."""
    from types import SimpleNamespace

    model, tokenizer, processor = tiny_artemis
    loaded = SimpleNamespace(model=model, tokenizer=tokenizer, image_processor=processor)
    spec = BENCHMARKS["videorefer-d"]
    sample = spec.read(benchmark=spec, annotations=peers.bench_d, videos=peers.videos, features=peers.features)[0]
    request, = build_requests(sample, loaded, PromptOptions(exact_boxes=True), seed=0)
    boxes = request.roi_boxes.tolist()
    assert boxes[0] == pytest.approx([v / d for v, d in zip(square_box(4), (64, 48, 64, 48))])  # the key frame_idx
    tracked = {tuple(round(v, 4) for v in box) for box in boxes[1:]}
    expected = {tuple(round(v / d, 4) for v, d in zip(square_box(f), (64, 48, 64, 48))) for f in (0, 2, 4, 6, 8)}
    assert tracked <= expected  # frame 10's mask is null: never a tracked frame
    assert request.roi_frames.shape[0] == 9


def test_single_frame_mode_uses_one_box_or_tracks_it(peers, tiny_artemis):
    from types import SimpleNamespace

    from artemis_cli.data.frames import VideoFrameReader
    from artemis_cli.infer.tasks import track_from_key_frame

    model, tokenizer, processor = tiny_artemis
    loaded = SimpleNamespace(model=model, tokenizer=tokenizer, image_processor=processor)
    spec = BENCHMARKS["videorefer-d"]
    single = spec.read(benchmark=spec, annotations=peers.bench_d, videos=peers.videos, features=peers.features,
                       frame_mode="single")[0]
    assert [box for box in single.referring.track_list if box] == [[16.0, 10.0, 32.0, 30.0]]
    request, = build_requests(single, loaded, PromptOptions(exact_boxes=True), seed=0)
    assert len({tuple(box) for box in request.roi_boxes.tolist()}) == 1  # key frame box, repeated
    tracked = track_from_key_frame(single.referring, VideoFrameReader(single.video), "csrt")
    found = [box for box in tracked.track_list if box]
    assert len(found) >= 3  # the key frame and its neighbours: the square is followed (sparse frames lose it later)
    for frame, box in zip(tracked.frame_id, tracked.track_list):
        if box:  # within a few pixels of the true square
            assert box == pytest.approx(square_box(frame), abs=4)


def test_bad_inputs_are_one_error_line(peers, tiny_artemis_dir, tmp_path):
    args = ["infer", "videorefer-q", *inputs(peers, "videorefer-q"), "--model", tiny_artemis_dir, *RUN]
    result = invoke([*args, "-o", tmp_path / "q.jsonl", "--question", "What is <bbox>?"])
    assert result.exit_code == 2 and "No such option: --question" in result.output  # Bench-Q asks its MCQ
    result = invoke([*args, "-o", tmp_path / "q.jsonl", "--tracker", "csrt"])
    assert result.exit_code == 2 and "--tracker" in result.output and "single-frame" in result.output
    rcap = ["infer", "plm-rcap", *inputs(peers, "plm-rcap"), "--model", tiny_artemis_dir, *RUN]
    result = invoke([*rcap, "-o", tmp_path / "r.jsonl", "--question", "Describe it."])
    assert result.exit_code == 2 and "exactly one <bbox>" in result.output
    missing = invoke(["infer", "videorefer-d", "--annotations", peers.bench_d, "--videos", tmp_path / "nope",
                      "--features", peers.features, "--model", tiny_artemis_dir, "-o", tmp_path / "d.jsonl", *RUN])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_a_record_without_its_video_fails_alone(peers, tiny_artemis_dir, tmp_path):
    records = json.loads(peers.bench_d.read_text())
    records.append({**records[0], "id": 7, "video": "gone.mp4"})
    records.append({**records[0], "id": 8, "frame_idx": "5"})  # not an annotated frame
    annotations = tmp_path / "d.json"
    annotations.write_text(json.dumps(records))
    output = tmp_path / "d.jsonl"
    result = invoke(["infer", "videorefer-d", "--annotations", annotations, "--videos", peers.videos, "--features",
                     peers.features, "--model", tiny_artemis_dir, "-o", output, *RUN, "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (2, 2)
    errors = {e["id"]: e["error"] for e in lines(output.with_name("d.errors.jsonl"))}
    assert "gone" in errors["7"] and "frame_idx '5'" in errors["8"]


@pytest.fixture
def judge_server(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-peers")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("ARTEMIS_CACHE", str(tmp_path / "cache"))
    with FakeJudgeServer("sk-test-peers") as server:
        yield server


BENCH_D_REPLY = ("1. Subject Correspondence: 4\nExplanation: x\n2. Appearance Description: 3\nExplanation: x\n"
                 "3. Temporal Description: 2\nExplanation: x\n4. Hallucination Detection: 5\nExplanation: x")


@pytest.mark.parametrize("benchmark, reply, mean", [("videorefer-d", BENCH_D_REPLY, 3.5),
                                                    ("plm-rcap", '{"score": 6, "explanation": "ok"}', 6)])
def test_judge_the_description_benchmarks(predictions, judge_server, benchmark, reply, mean, tmp_path):
    judge_server.answers["?"] = reply  # the tiny model's predictions carry no item marker
    _, path = predictions[benchmark]
    task, = BENCHMARKS[benchmark].judge_tasks
    result = invoke(["judge", "gpt", path, "--task", task, "--model", "judge-2025-01-01", "--base-url",
                     judge_server.base_url, "-o", tmp_path / "judged", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n_items"], summary["n_judged"], summary["n_failed"]) == (2, 2, 0)
    assert summary["mean_score"] == mean and summary["n_missing_predictions"] == 0


def test_score_bench_q_by_the_letter_regex(predictions):
    from artemis_cli.metrics.mcq import answer_letter, predicted_letter

    _, path = predictions["videorefer-q"]
    result = invoke(["score", path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    records = lines(path)
    correct = [predicted_letter(r["pred"])[0] == answer_letter(r["answer"]) for r in records]
    assert report["n_questions"] == 2 and report["n_correct"] == sum(correct)
    assert report["scoring"] == ["generate"] and report["n_multi_region"] == 1
    assert set(report["per_type"]) == {"Sequential Questions", "Relationship Questions"}
    table = invoke(["score", path])
    assert "all (micro)" in table.stdout and "Relationship Questions" in table.stdout
    assert invoke(["score", path, "--protocol", "both"]).exit_code == 2  # a caption option on MCQ answers


def test_unanswered_questions_count_as_wrong(peers, tiny_artemis_dir, tmp_path):
    records = json.loads(peers.bench_q.read_text())
    records.append({**records[0], "id": 9, "video": "DAVIS/JPEGImages/480p/gone"})
    annotations = tmp_path / "q.json"
    annotations.write_text(json.dumps(records))
    output = tmp_path / "q.jsonl"
    ran = invoke(["infer", "videorefer-q", "--annotations", annotations, "--videos", peers.videos, "--features",
                  peers.features, "--model", tiny_artemis_dir, "-o", output, *RUN])
    assert ran.exit_code == 1
    report = json.loads(invoke(["score", output, "--json"]).stdout)
    assert report["n_missing_predictions"] == 1 and report["n_questions"] == 3
    assert report["per_type"]["(not answered)"] == {"n": 1, "correct": 0, "accuracy": 0.0}


def test_bench_q_by_option_loglikelihood(peers, tiny_artemis, tiny_artemis_dir, tmp_path):
    """--answer-by loglikelihood writes the most likely option (the argmax of each option's log p after the
    prompt) and says so in every line; score reports how the answers were made."""
    from types import SimpleNamespace

    from artemis_cli.infer.loglik import continuation_logprob

    output = tmp_path / "q.jsonl"
    result = invoke(["infer", "videorefer-q", *inputs(peers, "videorefer-q"), "--answer-by", "loglikelihood",
                     "--model", tiny_artemis_dir, "-o", output, *RUN])
    assert result.exit_code == 0, result.output
    records = lines(output)
    assert all(r["scoring"] == "loglikelihood" and r["pred"] in r["options"] for r in records)
    model, tokenizer, processor = tiny_artemis
    loaded = SimpleNamespace(model=model, tokenizer=tokenizer, image_processor=processor)
    spec = BENCHMARKS["videorefer-q"]
    samples = spec.read(benchmark=spec, annotations=peers.bench_q, videos=peers.videos, features=peers.features,
                        answer_by="loglikelihood")
    for sample, record in zip(samples, records):
        request, = build_requests(sample, loaded, PromptOptions(), seed=0)
        scores = [continuation_logprob(loaded, request, " " + option)[0] for option in sample.choices]
        assert record["pred"] == sample.choices[scores.index(max(scores))]
    report = json.loads(invoke(["score", output, "--json"]).stdout)
    assert report["scoring"] == ["loglikelihood"] and report["n_first_char"] == 0
