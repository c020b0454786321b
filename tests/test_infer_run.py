"""`artemis infer` end to end on a tiny random Artemis and the `make-sample` data.

The tiny model's weights are scaled up ("sharpened") so its greedy answers depend on the input, and
its ``</s>`` row copies a token that some answers reach at different steps, so rows of one batch
stop at different points: the batch-of-N vs batch-of-1 comparison then covers padding and per-row stops.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.infer import InferConfig, infer
from artemis_cli.model.generation import DecodingSettings, decode_answer, embed_requests, generate_tokens
from artemis_cli.data.benchmarks import qa_samples, vcgbench_samples, videorefbench_samples
from artemis_cli.infer.tasks import PromptOptions, build_requests
from judge_server import FakeJudgeServer

SCALED = ("model.layers", "model.embed_tokens", "lm_head", "model.mm_projector")
MAX_NEW = 10
SHARP_SEEDS = 8
REPO = Path(__file__).resolve().parents[1]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Data:
    def __init__(self, sample):
        self.root = sample.data_root
        self.ann = sample.annotations
        self.features = sample.data_root / "Artemis_data" / "HC-STVG" / "clip_feature"
        self.bench = self.ann / "videorefbench" / "hc_stvg_val.json"
        self.questions = self.ann / "msvd_qa" / "test_q.json"
        self.answers = self.ann / "msvd_qa" / "test_a.json"
        self.vcg = {name: self.ann / "vcgbench" / f"{name}_qa.json" for name in ("generic", "temporal", "consistency")}

    def all_requests(self, loaded):
        samples = (qa_samples("msvd", self.questions, self.answers, self.features)
                   + videorefbench_samples(self.bench, self.root)
                   + vcgbench_samples("consistency", self.vcg["consistency"], self.features))
        return [r for s in samples for r in build_requests(s, loaded, PromptOptions(), seed=0)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(sample):
    return Data(sample)


def stop_token(rows: list[list[int]]):
    """The token whose first appearances are most spread out: ``</s>`` ties with it, so each row stops there."""
    def spread(token):
        return len({row.index(token) if token in row else None for row in rows})

    return max(sorted({t for row in rows for t in row[1:]}), key=spread, default=None)


def usable(rows: list[list[int]], token, tokenizer) -> bool:
    """Whether tying ``</s>`` to `token` gives what the tests need: rows that stop at different steps,
    3+ distinct answers, and different 4-token answers for the two consistency videos (the last 4 rows)."""
    answers = [row[:row.index(token)] if token in row else row for row in rows]
    lengths = {len(answer) for answer in answers}
    texts = [decode_answer(tokenizer, answer[:4]) for answer in answers[-4:]]
    return (token is not None and len(lengths) >= 2 and min(lengths) < MAX_NEW
            and len({tuple(answer) for answer in answers}) >= 3 and texts[:2] != texts[2:])


@pytest.fixture(scope="module")
def sharp(tiny_artemis, tiny_tokenizer_dir, tiny_clip_dir, data, tmp_path_factory):
    """(checkpoint folder, LoadedModel) of the sharpened tiny Artemis with the ``</s>`` tie.

    Most sharpened random draws answer every prompt alike: the first seed (0 = `tiny_artemis`) that is
    `usable` is taken (the tiny models are the same on every transformers version, so is the seed)."""
    from artemis_cli.model.loading import LoadedModel, load_model, save_model
    from artemis_cli.model.tiny import build_tiny_artemis

    folder = tmp_path_factory.mktemp("sharp") / "artemis"
    greedy = DecodingSettings(max_new_tokens=MAX_NEW)
    for seed in range(SHARP_SEEDS):
        model, tokenizer, processor = tiny_artemis if seed == 0 else \
            build_tiny_artemis(tiny_tokenizer_dir, tiny_clip_dir, seed=seed, roi_num_fuse=1)
        model = copy.deepcopy(model)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() > 1 and name.startswith(SCALED):
                    param.mul_(4.0)
        candidate = LoadedModel(model=model, tokenizer=tokenizer, image_processor=processor, kind="merged", source=folder)
        rows = [generate_tokens(model, tokenizer, [r], greedy)[0] for r in data.all_requests(candidate)]
        token = stop_token(rows)
        if usable(rows, token, tokenizer):
            break
    else:
        pytest.fail(f"no seed below {SHARP_SEEDS} gives a usable sharpened tiny model")
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = model.lm_head.weight[token]
    save_model(model, tokenizer, folder)
    return folder, load_model(folder, device="cpu")


def invoke(args: list[str], env: dict | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def qa_args(data: Data, folder: Path, out: Path, *extra) -> list:
    return ["infer", "qa", "--dataset", "msvd", "--questions", data.questions, "--answers", data.answers,
            "--features", data.features, "--model", folder, "--output", out, "--max-new-tokens", MAX_NEW, *extra]


def test_batched_equals_batch_of_one_with_per_row_stops(sharp, data):
    folder, loaded = sharp
    requests = data.all_requests(loaded)  # 4 QA + 2 VideoRefBench (with RoIs) + 2 x 2 consistency
    assert len({len(r.input_ids) for r in requests}) > 2  # different lengths: left padding matters
    for decoding in (DecodingSettings(max_new_tokens=MAX_NEW),
                     DecodingSettings(max_new_tokens=MAX_NEW, sample=True, temperature=0.7, seed=3)):
        decoding = decoding.resolved(loaded.model.generation_config)
        batched = generate_tokens(loaded.model, loaded.tokenizer, requests, decoding)
        single = [generate_tokens(loaded.model, loaded.tokenizer, [r], decoding)[0] for r in requests]
        assert batched == single
        if not decoding.sample:
            lengths = {len(row) for row in batched}
            assert len(lengths) >= 2 and min(lengths) < MAX_NEW  # some rows stopped at </s>, at different steps
            assert len({tuple(row) for row in batched}) >= 3  # answers depend on the input
    spliced = embed_requests(loaded.model, requests[:2], pad_id=0)
    assert spliced.attention_mask[:, 0].tolist().count(0) >= 1  # left padded


def test_all_three_commands_end_to_end_and_batch_size_does_not_matter(sharp, data, tmp_path):
    folder, _ = sharp
    outputs = {}
    for batch in (4, 1):
        out = tmp_path / f"b{batch}"
        runs = {
            "qa": qa_args(data, folder, out / "qa.jsonl"),
            "vrb": ["infer", "videorefbench", "--annotations", data.bench, "--data-root", data.root],
            "consistency": ["infer", "vcgbench", "--set", "consistency", "--annotations", data.vcg["consistency"],
                            "--features", data.features],
            "generic": ["infer", "vcgbench", "--set", "generic", "--annotations", data.vcg["generic"],
                        "--features", data.features],
        }
        for name, args in runs.items():
            if name != "qa":
                args += ["--model", folder, "--output", out / f"{name}.jsonl", "--max-new-tokens", MAX_NEW]
            result = invoke(args + ["--batch-size", batch, "--json"])
            assert result.exit_code == 0, result.output
            summary = json.loads(result.stdout)
            assert summary["failed"] == 0 and summary["done"] == summary["total"] > 0
            outputs[(batch, name)] = (out / f"{name}.jsonl").read_text()
    for name in ("qa", "vrb", "consistency", "generic"):
        assert outputs[(4, name)] == outputs[(1, name)]
    qa = read_lines(tmp_path / "b4" / "qa.jsonl")
    assert [list(line) for line in qa] == [["id", "question", "answer", "pred"]] * 4
    assert [line["id"] for line in qa] == ["msvd_0_0", "msvd_0_1", "msvd_1_0", "msvd_1_1"]
    vrb = read_lines(tmp_path / "b4" / "vrb.jsonl")
    assert [list(line) for line in vrb] == [["video_name", "groundtruth", "pred", "id"]] * 2
    assert vrb[0]["groundtruth"] == json.loads(data.bench.read_text())[0]["caption"]
    cons = read_lines(tmp_path / "b4" / "consistency.jsonl")
    assert list(cons[0]) == ["video_name", "Q1", "Q2", "A", "pred1", "pred2", "id"] and cons[0]["id"] == "hcstvg_000_0"
    manifest = json.loads((tmp_path / "b4" / "qa.manifest.json").read_text())
    assert manifest["settings"]["decoding"] == {"mode": "greedy", "max_new_tokens": MAX_NEW, "seed": 0}
    assert manifest["input_ids"] == [line["id"] for line in qa] and manifest["runs"][0]["batch_size"] == 4


def test_sampling_is_seeded_and_recorded(sharp, data, tmp_path):
    folder, _ = sharp
    texts = {}
    for seed in (1, 1, 2):
        out = tmp_path / f"s{seed}-{len(texts)}.jsonl"
        result = invoke(qa_args(data, folder, out, "--sample", "--temperature", "1.5", "--seed", seed, "--json"))
        assert result.exit_code == 0, result.output
        texts.setdefault(seed, []).append([line["pred"] for line in read_lines(out)])
        decoding = json.loads(output_manifest(out).read_text())["settings"]["decoding"]
        assert decoding == {"mode": "sample", "max_new_tokens": MAX_NEW, "seed": seed, "temperature": 1.5,
                            "top_k": 50, "top_p": 1.0}
    assert texts[1][0] == texts[1][1] != texts[2][0]


def output_manifest(out: Path) -> Path:
    return out.with_name(out.stem + ".manifest.json")


def test_failures_go_to_the_errors_file_and_are_retried(sharp, data, tmp_path):
    folder, _ = sharp
    root = tmp_path / "DATA_ROOT"
    shutil.copytree(data.root, root)
    records = json.loads(data.bench.read_text())
    frames = root / "Artemis_data" / records[0]["frame_path"]
    shutil.copytree(frames, frames.with_name("broken"))
    for path in frames.with_name("broken").iterdir():
        path.write_bytes(b"not a jpeg")
    unreadable = {**records[0], "frame_path": str(Path(records[0]["frame_path"]).with_name("broken"))}
    no_caption = {k: v for k, v in records[1].items() if k != "caption"}
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([unreadable, no_caption, records[1]]))
    out = tmp_path / "vrb.jsonl"
    args = ["infer", "videorefbench", "--annotations", bench, "--data-root", root, "--model", folder, "--output", out,
            "--max-new-tokens", 4]
    result = invoke(args + ["--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (1, 2)
    errors = {e["id"]: e for e in read_lines(tmp_path / "vrb.errors.jsonl")}
    assert errors["hcstvg_001_0"]["stage"] == "inputs" and "UnidentifiedImageError" in errors["hcstvg_001_0"]["error"]
    assert errors["hcstvg_001_1"]["stage"] == "record" and "caption: Field required" in errors["hcstvg_001_1"]["error"]
    assert [line["id"] for line in read_lines(out)] == ["hcstvg_001_1#1"]  # never a line without a pred
    text = invoke(args)
    assert text.exit_code == 1 and "hcstvg_001_0" in text.output and "vrb.errors.jsonl" in text.output
    assert invoke(args + ["--allow-failures"]).exit_code == 0
    bench.write_text(json.dumps([records[0], records[1], records[1]]))  # fixed: the same ids, rerun retries
    summary = json.loads(invoke(args + ["--json"]).stdout)
    assert (summary["skipped"], summary["done"], summary["failed"]) == (1, 2, 0)
    assert not (tmp_path / "vrb.errors.jsonl").exists() and len(read_lines(out)) == 3


def test_missing_feature_fails_one_sample_and_resume_skips_done_ids(sharp, data, tmp_path):
    folder, _ = sharp
    questions = json.loads(data.questions.read_text())
    questions[2]["video_name"] = "no_such_video"
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps(questions))
    out = tmp_path / "qa.jsonl"
    args = qa_args(data, folder, out, "--json")
    args[args.index(data.questions)] = qfile
    first = json.loads(invoke(args).stdout)
    assert (first["done"], first["failed"]) == (3, 1)
    assert "no_such_video.pkl: feature file not found" in first["failures"][0]["error"]
    again = json.loads(invoke(args).stdout)
    assert (again["skipped"], again["done"], again["failed"]) == (3, 0, 1)
    assert len(read_lines(out)) == 3
    args[args.index("--max-new-tokens") + 1] = 3
    result = invoke(args)
    assert result.exit_code == 2 and "other settings (decoding)" in result.output


def test_shards_then_merge_cover_every_id_once(sharp, data, tmp_path):
    folder, _ = sharp
    out = tmp_path / "qa.jsonl"
    clean = tmp_path / "clean.jsonl"
    assert invoke(qa_args(data, folder, clean)).exit_code == 0
    for rank in range(3):  # shard 1 from torchrun's environment, the others from options
        if rank == 1:
            result = invoke(qa_args(data, folder, out), env={"WORLD_SIZE": "3", "RANK": "1", "LOCAL_RANK": "0"})
        else:
            result = invoke(qa_args(data, folder, out, "--num-shards", 3, "--shard-index", rank))
        assert result.exit_code == 0, result.output
    shards = [tmp_path / f"qa.shard-{k}-of-3.jsonl" for k in range(3)]
    assert [len(read_lines(s)) for s in shards] == [2, 2, 0]
    missing = invoke(["infer", "merge", out, shards[0], shards[2]])
    assert missing.exit_code == 1 and "missing shard index(es): [1]" in missing.output
    assert "msvd_1_0" in missing.output and not out.exists()
    result = invoke(["infer", "merge", out, *shards, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 4
    assert out.read_text() == clean.read_text()  # input order, same lines as one unsharded run
    shards[2].write_text(shards[0].read_text().splitlines()[0] + "\n")
    result = invoke(["infer", "merge", tmp_path / "m2.jsonl", *shards, "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["duplicates"] == ["msvd_0_0"]
    assert not (tmp_path / "m2.jsonl").exists()


def test_outputs_feed_score_and_judge_unchanged(sharp, data, tmp_path, monkeypatch):
    folder, _ = sharp
    vrb = tmp_path / "vrb.jsonl"
    assert invoke(["infer", "videorefbench", "--annotations", data.bench, "--data-root", data.root, "--model", folder,
                   "--output", vrb, "--max-new-tokens", MAX_NEW]).exit_code == 0
    scored = invoke(["score", vrb, "--metrics", "bleu,rouge", "--no-length-filter", "--json"])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["n_input"] == report["n_scored"] == 2 and report["metrics"]["ROUGE_L"] is not None

    qa = tmp_path / "qa.jsonl"
    assert invoke(qa_args(data, folder, qa)).exit_code == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-infer")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeJudgeServer("sk-test-infer") as server:
        server.answers["?"] = '{"pred": "yes", "score": 4}'
        judged = invoke(["judge", "gpt", qa, "--task", "qa", "--base-url", server.base_url, "--cache",
                         tmp_path / "cache", "--json", "--model", "judge-2025-01-01"])
    assert judged.exit_code == 0, judged.output
    summary = json.loads(judged.stdout)
    assert summary["n_items"] == summary["n_judged"] == 4 and summary["accuracy"] == 1.0
    for qset, task in (("generic", "correctness"), ("temporal", "temporal"), ("consistency", "consistency")):
        out = tmp_path / f"{qset}.jsonl"
        assert invoke(["infer", "vcgbench", "--set", qset, "--annotations", data.vcg[qset], "--features",
                       data.features, "--model", folder, "--output", out, "--max-new-tokens", 4]).exit_code == 0
        dry = invoke(["judge", "gpt", out, "--task", task, "--dry-run", "--json", "--cache", tmp_path / "cache",
                      "--model", "judge-2025-01-01"])
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["calls_needed"] == 2


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_lines_of_one_clean_run(sharp, data, tmp_path):
    folder, _ = sharp
    questions = [{"video_name": f"hcstvg_00{i % 2}", "question": f"what moves {i}?", "question_id": f"q{i:02d}"}
                 for i in range(40)]
    qfile, afile = tmp_path / "q.json", tmp_path / "a.json"
    qfile.write_text(json.dumps(questions))
    afile.write_text(json.dumps([{"answer": "box"}] * 40))

    def args(out: Path) -> list:
        return ["infer", "qa", "--dataset", "msvd", "--questions", qfile, "--answers", afile, "--features",
                data.features, "--model", folder, "--output", out, "--max-new-tokens", 24, "--batch-size", 2]

    out = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "artemis_cli", *map(str, args(out)), "--json"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = out.read_text().count("\n")
    assert 3 <= written < 40, "the run must be killed part-way"
    with out.open("a") as handle:
        handle.write('{"id": "q39", "question": "wha')  # as if killed in the middle of a write
    resumed = invoke(args(out) + ["--json"])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["repaired_torn_line"] and summary["skipped"] == written and summary["done"] == 40 - written
    clean = tmp_path / "clean.jsonl"
    assert invoke(args(clean)).exit_code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 40
    assert sorted(lines) == sorted(clean.read_text().splitlines())


def test_bad_options_and_inputs_are_reported_before_any_work(sharp, data, tmp_path):
    folder, loaded = sharp
    out = tmp_path / "qa.jsonl"
    bad = invoke(qa_args(data, folder, out, "--temperature", 0, "--sample"))
    assert bad.exit_code == 2 and "decoding.temperature" in bad.output
    args = qa_args(data, folder, out)
    args[args.index("msvd")] = "msvdqa"
    bad = invoke(args)
    assert bad.exit_code == 2 and "task.qa.dataset" in bad.output and "msrvtt" in bad.output
    args = qa_args(data, folder, out)
    args[args.index(data.features)] = tmp_path / "nowhere"
    bad = invoke(args)
    assert bad.exit_code == 2 and "--features" in bad.output and "does not exist" in bad.output  # bad usage
    bad = invoke(qa_args(data, folder, out, "--num-shards", 2, "--shard-index", 2))
    assert bad.exit_code == 2 and "outside 0..1" in bad.output
    out.write_text('{"id": "x", "pred": "from elsewhere"}\n')
    bad = invoke(qa_args(data, folder, out))
    assert bad.exit_code == 2 and "exists without its manifest" in bad.output and "--overwrite" in bad.output
    from artemis_cli.errors import UsageError
    from artemis_cli.model.loading import LoadedModel

    no_tower = LoadedModel(model=loaded.model, tokenizer=loaded.tokenizer, image_processor=None, kind="merged",
                           source=folder)
    config = InferConfig(task={"kind": "videorefbench", "annotations": data.bench, "data_root": data.root},
                         model="m", output=tmp_path / "vrb.jsonl", show_progress=False)
    with pytest.raises(UsageError, match="no RoI module / image tower"):
        infer(config, loaded=no_tower)
    assert not (tmp_path / "vrb.jsonl").exists()
