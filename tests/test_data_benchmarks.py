"""The benchmark registry (`artemis_cli.data.benchmarks`): readers, ids, prediction schemas, and that a
new QA set in the standard format is one registry entry that infer, judge and verify-layout accept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.benchmarks import (BENCHMARKS, PREDICTIONS, names, qa_benchmark, qa_samples, vcgbench_samples,
                                         videorefbench_samples)
from artemis_cli.errors import InputError


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- ids and records ---------------------------------------------------------------------------------
def test_qa_ids_activitynet_prefix_and_feature_fallback(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    (features / "v_vid1.npy").write_bytes(b"")
    questions = write_json(tmp_path / "q.json", [{"video_name": "vid1", "question": "what?", "question_id": 7},
                                                 {"video_name": "vid2", "question": "who?", "question_id": "a"},
                                                 {"video_name": "vid3", "question_id": "b"}])
    answers = write_json(tmp_path / "a.json", [{"answer": "x"}, {"answer": 3}, {"answer": "z"}])
    samples = qa_samples("activitynet", questions, answers, features)
    assert [s.id for s in samples] == ["7", "a", "b"]
    assert samples[0].feature == features / "v_vid1.npy"  # the .npy twin when no .pkl exists
    assert samples[1].feature == features / "v_vid2.pkl"  # missing: named as the published .pkl
    assert samples[1].result(["p"]) == {"id": "a", "question": "who?", "answer": 3, "pred": "p"}
    assert samples[2].problem is not None and "question: Field required" in samples[2].problem
    assert qa_samples("msvd", questions, answers, features)[0].feature == features / "vid1.pkl"


def test_qa_duplicate_ids_and_length_mismatch_are_errors(tmp_path):
    questions = write_json(tmp_path / "q.json", [{"video_name": "v", "question": "q", "question_id": 1}] * 2)
    answers = write_json(tmp_path / "a.json", [{"answer": "x"}] * 2)
    with pytest.raises(InputError, match=r"1 duplicate question_id\(s\): '1' at 0 and 1"):
        qa_samples("msvd", questions, answers, tmp_path)
    with pytest.raises(InputError, match="2 questions but .* 1 answers"):
        qa_samples("msvd", questions, write_json(tmp_path / "a1.json", [{"answer": "x"}]), tmp_path)


def test_vcgbench_ids_follow_the_judge_and_consistency_has_two_questions(tmp_path):
    records = [{"video_name": "v1", "Q1": "a?", "Q2": "b?", "A": "c"}, {"video_name": "v1", "Q1": "d?", "Q2": "e?", "A": "f"},
               {"video_name": "v2", "Q1": "g?", "A": "h"}]
    samples = vcgbench_samples("consistency", write_json(tmp_path / "c.json", records), tmp_path)
    assert [s.id for s in samples] == ["v1_0", "v1_1", "v2_0"]
    assert samples[0].questions == ("a?", "b?")
    assert list(samples[0].result(["p1", "p2"])) == ["video_name", "Q1", "Q2", "A", "pred1", "pred2", "id"]
    assert samples[2].problem and "Q2" in samples[2].problem
    generic = vcgbench_samples("generic", write_json(tmp_path / "g.json", [{"video_name": 5, "Q": "q", "A": "a"}]),
                               tmp_path)
    assert generic[0].id == "5_0" and generic[0].result(["p"]) == {"video_name": 5, "Q": "q", "A": "a", "pred": "p",
                                                                   "id": "5_0"}


def test_videorefbench_ids_and_bad_records(tmp_path):
    good = {"clip_path": "c.pkl", "caption": "cap", "frame_path": "f", "frame_id": ["1.jpg"], "track_list": [[0, 0, 5, 5]],
            "video_name": "vid_0"}
    records = [good, dict(good), {**good, "video_name": None}, {k: v for k, v in good.items() if k != "clip_path"},
               {**good, "video_name": "x", "track_list": [[]]}]
    (tmp_path / "Artemis_data").mkdir()
    samples = videorefbench_samples(write_json(tmp_path / "bench.json", records), tmp_path)
    assert [s.id for s in samples] == ["vid_0", "vid_0#1", "#2", "vid_0#2", "x"]
    assert samples[0].root == tmp_path / "Artemis_data" and samples[0].problem is None
    assert "video_name" in samples[2].problem
    assert "clip_path: Field required" in samples[3].problem
    assert "no tracked frame" in samples[4].problem
    assert samples[0].result(["p"]) == {"video_name": "vid_0", "groundtruth": "cap", "pred": "p", "id": "vid_0"}


# ---- the registry ------------------------------------------------------------------------------------
def test_registry_holds_every_published_benchmark_with_its_prediction_record():
    assert names("videorefbench") == ["videorefbench"]
    assert names("qa") == ["msvd", "msrvtt", "activitynet", "tgif"]
    assert names("vcgbench") == ["generic", "temporal", "consistency"]
    assert BENCHMARKS["activitynet"].feature_prefix == "v_" and BENCHMARKS["msvd"].feature_prefix == ""
    assert BENCHMARKS["consistency"].prediction is PREDICTIONS["consistency"]
    assert {task for spec in BENCHMARKS.values() for task in spec.judge_tasks} == {
        "qa", "correctness", "detail", "context", "temporal", "consistency", "videorefer-d", "plm-rcap"}
    assert [spec.name for spec in BENCHMARKS.values() if spec.needs_roi] == ["videorefbench", "videorefer-d",
                                                                            "videorefer-q", "plm-rcap"]
    for name in ("videorefer-d", "videorefer-q", "plm-rcap"):  # the peers' benchmarks: one command each
        assert names(name) == [name] and BENCHMARKS[name].output_stem == name.replace("-", "_")
    assert BENCHMARKS["videorefer-q"].prediction is PREDICTIONS["mcq"]
    assert BENCHMARKS["plm-rcap"].prediction is BENCHMARKS["videorefer-d"].prediction is PREDICTIONS["description"]


class EchoJudge:
    """A chat client whose verdict is "yes"/5 when the prediction is non-empty."""

    def __init__(self):
        self.calls = 0
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, model, messages, **kwargs):
        self.calls += 1
        reply = json.dumps({"pred": "yes", "score": 5})
        return SimpleNamespace(model=model, choices=[SimpleNamespace(message=SimpleNamespace(content=reply))],
                               usage=SimpleNamespace(prompt_tokens=1, completion_tokens=1))


@pytest.mark.slow
def test_a_new_qa_dataset_is_one_registry_entry(sample, tiny_artemis_dir, tmp_path, monkeypatch):
    from artemis_cli.data.verify import verify_layout
    from artemis_cli.judge import JudgeOptions, judge

    monkeypatch.setitem(BENCHMARKS, "nextqa", qa_benchmark("nextqa", "NExT-QA"))
    files = tmp_path / "annotations" / "nextqa"
    files.mkdir(parents=True)
    for name in ("test_q.json", "test_a.json"):
        shutil.copy(sample.annotations / "msvd_qa" / name, files / name)
    features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
    out = tmp_path / "preds" / "nextqa.jsonl"
    result = CliRunner().invoke(app, ["infer", "qa", "--dataset", "nextqa", "--questions", str(files / "test_q.json"),
                                      "--answers", str(files / "test_a.json"), "--features", str(features),
                                      "--model", str(tiny_artemis_dir), "-o", str(out), "--max-new-tokens", "3",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    questions = json.loads((files / "test_q.json").read_text())
    assert [line["id"] for line in lines] == [str(q["question_id"]) for q in questions]
    assert all(list(line) == list(PREDICTIONS["qa"].fields) for line in lines)
    manifest = json.loads(out.with_name("nextqa.manifest.json").read_text())
    assert manifest["settings"]["task"]["dataset"] == "nextqa"

    rejected = CliRunner().invoke(app, ["infer", "qa", "--dataset", "nextqb", "--questions", str(files / "test_q.json"),
                                        "--answers", str(files / "test_a.json"), "--features", str(features),
                                        "--model", str(tiny_artemis_dir), "-o", str(tmp_path / "x.jsonl")])
    assert rejected.exit_code == 2 and "expected one of msvd, msrvtt, activitynet, tgif, nextqa" in rejected.output

    client = EchoJudge()
    summary = judge(out, JudgeOptions(task="qa", model="m", cache_dir=tmp_path / "cache", output_dir=tmp_path / "judged",
                                      show_progress=False), client=client)
    distinct = {(line["question"], line["answer"], line["pred"]) for line in lines}  # identical items share a call
    assert summary.n_judged == len(lines) and summary.accuracy == 1.0 and client.calls == len(distinct)
    judged = [json.loads(line) for line in (tmp_path / "judged" / "judgments.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in judged) == sorted(line["id"] for line in lines)

    report = verify_layout(sample.data_root, tmp_path / "annotations")
    assert report.ok, [p.message for p in report.problems]
    assert report.counts["records_by_kind"] == {"qa_answers": len(questions), "qa_questions": len(questions)}
