"""Planted defects: each must be reported with its file, record and field, and exit 1."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.feature_files import save_feature
from artemis_cli.data.verify import verify_layout

runner = CliRunner()


@pytest.fixture
def data(sample, tmp_path):
    """A private copy of the sample: (DATA_ROOT, annotations)."""
    root, ann = tmp_path / "DATA_ROOT", tmp_path / "annotations"
    shutil.copytree(sample.data_root, root)
    shutil.copytree(sample.annotations, ann)
    return root, ann


def _problems(root, ann, **kwargs):
    report = verify_layout(root, ann, **kwargs)
    return report, [p for p in report.problems if p.severity == "error"]


def _edit(path, change):
    records = json.loads(path.read_text())
    change(records)
    path.write_text(json.dumps(records))


def _cli_json(*args):
    result = runner.invoke(app, ["data", "verify-layout", *map(str, args), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_truncated_json_names_file_line_and_column(data):
    root, ann = data
    path = ann / "stage1/pretrain.json"
    text = path.read_text()[:-40]
    path.write_text(text)
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    code, out = _cli_json(root, "--annotations", ann)
    assert code == 1 and not out["ok"]
    [problem] = out["problems"]
    assert problem["kind"] == "json" and problem["path"].endswith("stage1/pretrain.json")
    assert f"pretrain.json:{expected.value.lineno}:{expected.value.colno}: invalid JSON" in problem["message"]


def test_non_utf8_and_empty_files(data):
    root, ann = data
    (ann / "stage2/text_only.json").write_bytes(b'[{"conversations": [{"from": "human", "value": "caf\xe9"}]}]')
    (ann / "extra.json").write_text("")
    _, errors = _problems(root, ann)
    messages = {p.path.split("/")[-1]: p.message for p in errors}
    assert "not valid UTF-8 (byte 0xe9" in messages["text_only.json"]
    assert "file is empty" in messages["extra.json"]


def test_file_of_no_known_kind_and_non_list(data):
    root, ann = data
    (ann / "odd.json").write_text(json.dumps([{"foo": 1}]))
    (ann / "obj.json").write_text(json.dumps({"conversations": []}))
    _, errors = _problems(root, ann)
    by_file = {p.path.split("/")[-1]: p for p in errors}
    assert "fits no known record kind" in by_file["odd.json"].message and "foo" in by_file["odd.json"].message
    assert "expected a JSON list of records, got a JSON dict" in by_file["obj.json"].message


def test_wrong_kind_wrong_types_and_missing_keys_are_each_located(data):
    root, ann = data
    path = ann / "stage3/hc_stvg_train.json"

    def plant(records):
        records[0]["frame_id"] = "00001.jpg"            # wrong type
        del records[1]["caption"]                       # missing key
        records.append({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})  # wrong kind

    _edit(path, plant)
    _, errors = _problems(root, ann)
    located = {(p.record, p.field) for p in errors if p.path.endswith("hc_stvg_train.json")}
    assert (0, "frame_id") in located
    assert (1, "caption") in located
    appended = len(json.loads(path.read_text())) - 1
    assert (appended, "clip_path") in located and (appended, "track_list") in located
    missing = next(p for p in errors if p.record == 1 and p.field == "caption")
    assert missing.message.startswith("missing required field")


def test_referring_rules(data):
    root, ann = data
    path = ann / "stage3/got10k.json"

    def plant(records):
        record = records[0]
        first = next(i for i, b in enumerate(record["track_list"]) if b)
        x1, y1, x2, y2 = record["track_list"][first]
        record["track_list"][first] = [x2, y1, x1, y2]   # x1 > x2
        record["track_list"].append([1, 2, 3, 4])        # one more box than frames
        record["question"] = "Is <bbox> near <bbox>?"
        record["frame_id"][-1] = "missing.jpg"
        record["clip_path"] = "GOT-10k/clip_feature/nope.pkl"

    _edit(path, plant)
    _, errors = _problems(root, ann)
    got = {p.field: p.message for p in errors if p.path.endswith("got10k.json")}
    assert "needs x1 < x2" in next(m for f, m in got.items() if f.startswith("track_list["))
    assert "entries but frame_id has" in got["track_list"]
    assert "exactly one <bbox>, found 2" in got["question"]
    assert "'missing.jpg'" in got["frame_id"]
    assert "not found in DATA_ROOT/Artemis_data" in got["clip_path"]


def test_all_lost_track_and_missing_frame_folder(data):
    root, ann = data
    _edit(ann / "stage3/mgit.json", lambda r: r[0].update(track_list=[[] for _ in r[0]["track_list"]], key_frame_box=[]))
    _edit(ann / "stage3/got10k.json", lambda r: r[0].update(frame_path="GOT-10k/data/full_data/train/absent"))
    _, errors = _problems(root, ann)
    assert any(p.field == "track_list" and "no tracked frame" in p.message for p in errors)
    assert any(p.field == "frame_path" and "absent" in p.message for p in errors)


def test_conversation_rules_and_media_references(data):
    root, ann = data

    def plant(records):
        records[0]["conversations"][1]["from"] = "human"              # not alternating
        records[1]["conversations"][0]["value"] = "Compare them."      # image without <image>
        records[2]["video_clip"] = "gone.pkl"                          # missing feature
        records[3]["image"] = "coco/absent.jpg"                        # missing image

    _edit(ann / "stage2/instruct.json", plant)
    _, errors = _problems(root, ann)
    got = {(p.record, p.field): p.message for p in errors if p.path.endswith("instruct.json")}
    assert "expected 'gpt'" in got[(0, "conversations[1].from")]
    assert "no human turn contains <image>" in got[(1, "conversations")]
    assert "'gone.pkl' not found" in got[(2, "video_clip")]
    assert "'coco/absent.jpg' not found" in got[(3, "image")]


def test_qa_question_and_answer_files_must_have_equal_length(data):
    root, ann = data
    _edit(ann / "msvd_qa/test_a.json", lambda r: r.pop())
    _, errors = _problems(root, ann)
    [pair] = [p for p in errors if p.kind == "qa_pair"]
    assert "4 questions but test_a.json has 3 answers" in pair.message


def test_data_root_is_a_file_and_missing_sources(tmp_path):
    afile = tmp_path / "root.txt"
    afile.write_text("x")
    code, out = _cli_json(afile)
    assert code == 1 and out["problems"][0]["message"] == "DATA_ROOT is a file, expected a folder"

    root = tmp_path / "DATA_ROOT"
    (root / "llava_image").mkdir(parents=True)
    (root / "llava_image" / "a.jpg").write_bytes(b"x")
    code, out = _cli_json(root, "--stage", "3")
    messages = {p["path"].split("DATA_ROOT/")[1]: p["message"] for p in out["problems"]}
    assert "llava_image" not in messages  # stage 1 folders are not required for --stage 3
    assert "folder is missing" in messages["Artemis_data/MeViS_release"]
    assert "do not redistribute" in messages["Artemis_data/MeViS_release"]
    assert "got-10k.aitestunion.com" in messages["Artemis_data/GOT-10k/data/full_data/train"]
    assert "videocube" in messages["Artemis_data/MGIT/MGIT-Train"]
    assert "do not redistribute" not in messages["Artemis_data/HC-STVG"]


def test_empty_and_unreadable_folders(data, monkeypatch):
    root, _ = data
    shutil.rmtree(root / "valley")
    (root / "valley").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("llava_image_tune"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = verify_layout(root)
    messages = {p.path.split("/")[-1]: p.message for p in report.problems}
    assert messages["valley"].startswith("folder is empty")
    assert messages["llava_image_tune"].startswith("folder is not readable (permission denied)")


def test_check_features_catches_code_running_pickle_wrong_shape_dtype_and_width(data, tmp_path):
    root, ann = data
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    hc = root / "Artemis_data/HC-STVG/clip_feature"
    (hc / "hcstvg_000.pkl").write_bytes(pickle.dumps(RunsCode()))
    save_feature(root / "valley/valley_000.pkl", np.zeros((100, 64), np.float16))
    save_feature(root / "videochatgpt_tune/vcg_000.pkl", np.zeros((356, 64), np.float32))
    save_feature(root / "Artemis_data/MGIT/clip_feature/MGIT_001.pkl", np.zeros((356, 32), np.float16))
    code, out = _cli_json(root, "--annotations", ann, "--check-features")
    assert code == 1
    assert not marker.exists()
    got = {p["path"].split("/")[-1]: p for p in out["problems"]}
    assert "refused to load pickle" in got["hcstvg_000.pkl"]["message"]
    assert got["valley_000.pkl"]["field"] == "shape" and "[100, 64]" in got["valley_000.pkl"]["message"]
    assert got["vcg_000.pkl"]["field"] == "dtype" and "float32" in got["vcg_000.pkl"]["message"]
    assert "C=32" in got["MGIT_001.pkl"]["message"] and "C=64" in got["MGIT_001.pkl"]["message"]


def test_every_problem_is_reported_and_max_problems_caps_the_listing(data):
    root, ann = data
    _edit(ann / "stage3/hc_stvg_train.json", lambda recs: [r.pop("caption") for r in recs])
    _edit(ann / "vcgbench/generic_qa.json", lambda recs: [r.pop("A") for r in recs])
    code, out = _cli_json(root, "--annotations", ann, "--max-problems", "2")
    assert code == 1
    assert out["counts"]["errors"] == 4 and out["counts"]["problems_by_kind"] == {"record": 4}
    assert out["counts"]["problems_listed"] == 2 and len(out["problems"]) == 2
    assert set(out["problems"][0]) == {"severity", "kind", "path", "record", "field", "message"}


def test_table_output_lists_problems_and_exit_code(data):
    root, ann = data
    _edit(ann / "msvd_qa/test_q.json", lambda r: r[0].pop("question_id"))
    result = runner.invoke(app, ["data", "verify-layout", str(root), "--annotations", str(ann)])
    assert result.exit_code == 1
    assert "FAILED: 1 error(s)" in result.output
    assert "question_id" in result.output
    assert "Traceback" not in result.output


def test_the_report_says_what_was_and_was_not_checked(data):
    """Without --annotations it said "ok" under an empty table; now each check run or skipped is named, the
    empty table is gone, and `--stage none` with nothing to check is bad usage."""
    root, ann = data
    result = runner.invoke(app, ["data", "verify-layout", str(root)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("checked: the 13 source folder(s) stage all reads (llava_image, ")
    assert lines[1:] == ["not checked: annotation records and the files they name (pass --annotations)",
                         "not checked: the contents of feature files (pass --check-features)",
                         "ok: no errors in what was checked"]
    assert "┏" not in result.stdout  # no table of zero rows
    full = runner.invoke(app, ["data", "verify-layout", str(root), "--annotations", str(ann), "--check-features"])
    assert full.exit_code == 0 and "not checked" not in full.stdout
    assert "checked: the contents of" in full.stdout and " annotation record(s) in " in full.stdout
    code, doc = _cli_json(root, "--stage", "1")
    assert code == 0 and doc["not_checked"][0].startswith("annotation records") and len(doc["checked"]) == 1
    nothing = runner.invoke(app, ["data", "verify-layout", str(root), "--stage", "none"])
    assert nothing.exit_code == 2 and "nothing to check" in nothing.stderr and "hint: pass --annotations" in nothing.stderr
