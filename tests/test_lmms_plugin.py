"""The lmms-eval plugin: `lmms-eval --model artemis` on our tasks (the peers' benchmarks and VideoRefBench, on
generated data and the tiny model) and on a plain video-QA task of lmms-eval's own kind (generation and
log-likelihood), in a virtual environment of its own.

lmms-eval is not in `artemis[all]`: its wheel pins ``av<16`` and ``opencv-python-headless`` (beside our
``opencv-contrib-python-headless`` it breaks ``cv2``), and 0.7.3 breaks on ``filelock>=4`` (``filelock._api``
is gone). The test builds that environment: a venv whose ``.pth`` sees this environment's packages (torch
is not installed twice) and whose own site-packages holds lmms-eval and its pins, which shadow ours. It
needs the package index (the CI machine reaches it) and is skipped, saying so, when the index is
unreachable; ``ARTEMIS_LMMS_VENV=DIR`` reuses an environment built that way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from judge_server import FakeJudgeServer
from peer_fixtures import write_peer_data

pytestmark = pytest.mark.slow
LMMS_EVAL = "lmms-eval==0.7.3"
PINS = ["filelock<4"]  # lmms-eval 0.7.3 imports filelock._api, which filelock 4 removed
REPO = Path(__file__).resolve().parents[1]
BENCH_D_REPLY = "\n".join(f"{k}. {name}: {score}\nExplanation: x" for k, (name, score) in enumerate(
    (("Subject Correspondence", 4), ("Appearance Description", 3), ("Temporal Description", 2),
     ("Hallucination Detection", 5)), start=1))


def _run(command: list, timeout: int, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def lmms_venv(tmp_path_factory) -> Path:
    prepared = os.environ.get("ARTEMIS_LMMS_VENV")
    if prepared:
        return Path(prepared)
    folder = tmp_path_factory.mktemp("lmms") / "venv"
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 60).stdout.strip())
    (site / "artemis_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = _run([python, "-m", "pip", "download", "--no-deps", "-q", "--retries", "1", "--timeout", "15", "-d",
                  folder.parent / "probe", LMMS_EVAL], 180)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the package index is unreachable, so {LMMS_EVAL} cannot be installed ({last})")
    install = _run([python, "-m", "pip", "install", "-q", LMMS_EVAL, *PINS], 1200)
    assert install.returncode == 0, install.stderr[-3000:]
    editable = _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", REPO], 300)
    assert editable.returncode == 0, editable.stderr[-3000:]
    return folder


TOY_QA = """task: toy_video_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: generate_until
doc_to_visual: !function toy_utils.visual
doc_to_text: question
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 4
  temperature: 0
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
TOY_MC = """task: toy_video_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
doc_to_visual: !function toy_utils.visual
doc_to_text: question
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def toy_tasks(folder: Path, videos: Path) -> Path:
    """Two tasks of lmms-eval's own kind over whole videos: a generated answer, and a choice by log-likelihood."""
    folder.mkdir()
    docs = folder / "toy.json"
    docs.write_text(json.dumps([
        {"video": str(videos / "clip_a.mp4"), "question": "What moves?", "answer": "a square",
         "choices": ["a square", "a dog"], "label": 0},
        {"video": str(videos / "clip_b.mp4"), "question": "Which way?", "answer": "right",
         "choices": ["left", "right", "up"], "label": 1}]))
    (folder / "toy_utils.py").write_text("def visual(doc):\n    return [doc['video']]\n")
    (folder / "toy_video_qa.yaml").write_text(TOY_QA.format(docs=docs))
    (folder / "toy_video_mc.yaml").write_text(TOY_MC.format(docs=docs))
    return folder


def lmms_eval(venv_folder: Path, model_args: str, tasks: str, include: Path, out: Path, env: dict) -> dict:
    """Run lmms-eval; return its results (it logs a failure and exits 0, so the results file is the check)."""
    result = _run([venv_folder / "bin" / "lmms-eval", "--model", "artemis", "--model_args", model_args, "--tasks",
                   tasks, "--include_path", include, "--output_path", out, "--log_samples", "--batch_size", "2"],
                  600, env=env, cwd=out.parent)
    output = result.stdout + result.stderr
    found = list(out.rglob("*_results.json"))
    assert result.returncode == 0 and len(found) == 1, output[-6000:]
    assert "not answered" not in output  # every document had its inputs
    samples = {path.name: [json.loads(line) for line in path.read_text().splitlines()]
               for path in out.rglob("*_samples_*.jsonl")}
    return {"results": json.loads(found[0].read_text())["results"], "samples": samples}


def test_lmms_eval_runs_artemis_on_our_tasks(lmms_venv, tiny_artemis_dir, sample, tmp_path):
    from artemis_cli.lmms_plugin import tasks_dir

    peers = write_peer_data(tmp_path / "peers")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost",
           "HF_HOME": str(tmp_path / "hf"), "OPENAI_API_KEY": "sk-test-lmms", "ARTEMIS_JUDGE_MODEL": "judge-2025-01-01",
           "ARTEMIS_LMMS_JUDGE_OUTPUT": str(tmp_path / "judged")}
    env.pop("LMMS_EVAL_PLUGINS", None)  # the model through its entry point here
    for benchmark, inputs in (("VIDEOREFER_D", {"ANNOTATIONS": peers.bench_d}),
                              ("VIDEOREFER_Q", {"ANNOTATIONS": peers.bench_q}),
                              ("PLM_RCAP", {"ANNOTATIONS": peers.rcap, "METADATA": peers.metadata})):
        for name, value in {**inputs, "VIDEOS": peers.videos, "FEATURES": peers.features}.items():
            env[f"ARTEMIS_LMMS_{benchmark}_{name}"] = str(value)
    env["ARTEMIS_LMMS_VIDEOREFBENCH_ANNOTATIONS"] = str(sample.annotations / "videorefbench" / "hc_stvg_val.json")
    env["ARTEMIS_LMMS_VIDEOREFBENCH_DATA_ROOT"] = str(sample.data_root)
    tasks = "artemis_videorefer_q,artemis_videorefer_d,artemis_plm_rcap,artemis_videorefbench"
    with FakeJudgeServer("sk-test-lmms") as server:
        server.responder = lambda body: (BENCH_D_REPLY if "four key dimensions" in body["messages"][0]["content"]
                                         else '{"score": 6, "explanation": "ok"}')
        env["ARTEMIS_JUDGE_BASE_URL"] = server.base_url
        run = lmms_eval(lmms_venv, f"pretrained={tiny_artemis_dir},device=cpu", tasks, tasks_dir(), tmp_path / "out",
                        env)
    results = run["results"]
    assert 0 <= results["artemis_videorefer_q"]["accuracy,none"] <= 1
    judged_d = results["artemis_videorefer_d"]["judge,none"]
    assert (judged_d["n_judged"], judged_d["n_failed"], judged_d["mean_score"]) == (2, 0, 3.5)
    assert judged_d["Temporal Description"] == 2 and judged_d["temperature"] == 0.7
    assert results["artemis_plm_rcap"]["judge,none"]["mean_score"] == 6
    assert server.total_requests >= 4  # Bench-D and RCap judged through the fake server, never the network
    assert "CIDEr" in results["artemis_videorefbench"]["coco,none"] or \
        results["artemis_videorefbench"]["coco,none"]["n_scored"] == 0
    responses = [s for name, rows in run["samples"].items() if "artemis_videorefer_q" in name for s in rows]
    assert len(responses) == 2 and all(isinstance(s["filtered_resps"], str) for s in responses)
    assert {s["accuracy"]["n_regions"] for s in responses} == {1, 2}  # our prediction lines, scored by metrics.mcq


def test_lmms_eval_runs_artemis_on_plain_video_tasks(lmms_venv, tiny_artemis_dir, tmp_path):
    peers = write_peer_data(tmp_path / "peers")
    toy = toy_tasks(tmp_path / "toy", peers.videos)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "LMMS_EVAL_PLUGINS": "artemis_cli.lmms_plugin"}  # lmms-eval's older plugin lookup finds the model too
    run = lmms_eval(lmms_venv, f"pretrained={tiny_artemis_dir},device=cpu,features={peers.features}",
                    "toy_video_qa,toy_video_mc", toy, tmp_path / "out", env)
    results = run["results"]
    assert 0 <= results["toy_video_qa"]["exact_match,none"] <= 1
    assert 0 <= results["toy_video_mc"]["acc,none"] <= 1  # answered by log-likelihood of each choice
    choices = [s for name, rows in run["samples"].items() if "toy_video_mc" in name for s in rows]
    assert [len(s["filtered_resps"]) for s in choices] == [2, 3], choices  # one log-likelihood per choice
    values = [float(v[0]) for s in choices for v in s["filtered_resps"]]  # the sample log writes them as text
    assert all(-1e4 < v < 0 for v in values), choices
