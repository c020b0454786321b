"""Property-based checks (hypothesis) of issue 14: whatever JSON a user's file holds, and wherever it is
cut off, the record, prediction, manifest and config readers raise only `ArtemisError` (which the CLI
turns into one `error:` line), never another exception. Sized to run in well under a minute."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artemis_cli.errors import ArtemisError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(min_value=-10**20, max_value=10**20)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
# Records that look like the real ones, with values of any type: the readers get past the first checks.
FIELDS = ["video_name", "groundtruth", "pred", "id", "question", "answer", "question_id", "Q", "A", "Q1", "Q2",
          "pred1", "pred2", "clip_path", "caption", "frame_path", "frame_id", "track_list", "key_frame_id",
          "key_frame_box", "conversations", "image", "video", "video_clip", "settings", "input_ids", "shard", "runs"]
record_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
files = st.lists(record_like | json_values, max_size=4) | json_values


def write(tmp_path: Path, name: str, value) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value, allow_nan=True), encoding="utf-8")
    return path


def only_artemis_errors(call) -> None:
    try:
        call()
    except ArtemisError:
        pass


@SETTINGS
@given(value=files, suffix=st.sampled_from([".json", ".jsonl"]))
def test_record_and_prediction_readers(tmp_path_factory, value, suffix):
    from artemis_cli.common.jsonio import load_records
    from artemis_cli.infer.shards import read_manifest, read_predictions
    from artemis_cli.metrics.score import ScoreOptions, score_file

    tmp = tmp_path_factory.mktemp("p")
    path = tmp / f"preds{suffix}"
    if suffix == ".jsonl" and isinstance(value, list):
        path.write_text("".join(json.dumps(v, allow_nan=True) + "\n" for v in value), encoding="utf-8")
    else:
        path.write_text(json.dumps(value, allow_nan=True), encoding="utf-8")
    only_artemis_errors(lambda: load_records(path))
    only_artemis_errors(lambda: score_file(path, ScoreOptions(metrics=["bleu"], skip_bad=True)))
    only_artemis_errors(lambda: score_file(path, ScoreOptions(metrics=["bleu"])))
    only_artemis_errors(lambda: read_predictions(path))
    only_artemis_errors(lambda: read_manifest(write(tmp, "x.manifest.json", value)))


@SETTINGS
@given(value=files, task=st.sampled_from(["qa", "correctness", "consistency"]))
def test_judge_items_reader(tmp_path_factory, value, task):
    from artemis_cli.judge.items import load_items

    tmp = tmp_path_factory.mktemp("j")
    only_artemis_errors(lambda: load_items(task, write(tmp, "preds.json", value if isinstance(value, list) else [value])))


@SETTINGS
@given(value=files)
def test_annotation_validation(tmp_path_factory, sample, value):
    from artemis_cli.data.verify import verify_layout

    tmp = tmp_path_factory.mktemp("a")
    path = write(tmp, "records.json", value)
    only_artemis_errors(lambda: verify_layout(sample.data_root, path, stage="all", check_features=False,
                                              show_progress=False))


train_sections = st.fixed_dictionaries({}, optional={
    "stage": json_values | st.sampled_from([1, 2, 3]),
    "model": st.dictionaries(st.sampled_from(["path", "base", "max_length", "roi", "k_means", "template"]),
                             json_values, max_size=3) | json_values,
    "data": st.dictionaries(st.sampled_from(["root", "annotations", "num_workers", "group_by"]), json_values,
                            max_size=3),
    "train": st.dictionaries(st.sampled_from(["output_dir", "epochs", "max_steps", "lr", "save_steps", "batch_size",
                                              "grad_accum", "precision", "deepspeed", "save_total_limit"]),
                             json_values | st.floats(), max_size=5),
})


@SETTINGS
@given(value=train_sections, stage=st.sampled_from([1, 2, 3]))
def test_train_config_reader(tmp_path_factory, value, stage):
    from artemis_cli.train.config import load_train_config

    tmp = tmp_path_factory.mktemp("c")
    path = write(tmp, "run.yaml", value)  # JSON is YAML
    only_artemis_errors(lambda: load_train_config(stage, path, []))


@SETTINGS
@given(value=st.dictionaries(st.sampled_from(["hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "num_key_value_heads", "intermediate_size", "vocab_size",
                                              "rms_norm_eps", "mm_hidden_size", "model_type", "mm_projector_type",
                                              "mm_image_tower", "max_position_embeddings"]),
                             json_values, max_size=6))
def test_model_config_json_reader(tmp_path_factory, value):
    from artemis_cli.model.config import read_config_json

    tmp = tmp_path_factory.mktemp("m")
    only_artemis_errors(lambda: read_config_json(write(tmp, "config.json", value)))


@pytest.fixture(scope="module")
def valid_files(sample, tmp_path_factory) -> dict[str, Path]:
    """One valid file of each kind, to be cut off anywhere."""
    tmp = tmp_path_factory.mktemp("valid")
    preds = tmp / "preds.jsonl"
    preds.write_text("".join(json.dumps({"video_name": f"v{i}", "groundtruth": "a red box moves left",
                                         "pred": "the red box moves to the left"}) + "\n" for i in range(3)))
    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "sample_stage3.yaml"
    return {"predictions": preds, "referring": sample.annotations / "stage3" / "hc_stvg_train.json",
            "questions": sample.annotations / "msvd_qa" / "test_q.json", "config": config}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["predictions", "referring", "questions", "config"]), cut=st.floats(0, 1))
def test_truncated_files(tmp_path_factory, valid_files, sample, kind, cut):
    from artemis_cli.common.jsonio import load_records
    from artemis_cli.data.verify import verify_layout
    from artemis_cli.metrics.score import ScoreOptions, score_file
    from artemis_cli.train.config import load_train_config

    data = valid_files[kind].read_bytes()
    tmp = tmp_path_factory.mktemp("t")
    path = tmp / valid_files[kind].name
    path.write_bytes(data[: math.floor(len(data) * cut)])
    if kind == "config":
        only_artemis_errors(lambda: load_train_config(3, path, [], check_paths=False))
        return
    only_artemis_errors(lambda: load_records(path))
    if kind == "predictions":
        only_artemis_errors(lambda: score_file(path, ScoreOptions(metrics=["bleu"])))
    else:
        only_artemis_errors(lambda: verify_layout(sample.data_root, path, stage="all", check_features=False,
                                                  show_progress=False))
