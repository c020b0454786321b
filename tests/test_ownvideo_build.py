"""`artemis data build-referring` on generated videos -> `data verify-layout` passes -> `train stage3` trains on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from ownvideo_helpers import video_file

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "configs" / "sample_stage3.yaml"


def invoke(args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.slow
def test_build_referring_verify_and_train(train_workspace, tmp_path):
    import shutil

    videos = tmp_path / "videos"
    mp4, first = video_file(videos, seed=1, n_frames=12, width=224, height=128, name="street.mp4")
    folder, second = video_file(videos, seed=2, n_frames=10, width=224, height=128, name="yard")
    (videos / "broken.mp4").write_bytes(b"\x00" * 300)
    lines = [
        {"video": "videos/street.mp4", "frame": 0, "box": first.objects["walker"].boxes[0],
         "caption": "A red and yellow block walks to the right and grows."},
        {"video": "videos/street.mp4", "frame": 4, "box": first.objects["leaver"].boxes[4],
         "caption": "A green block leaves the scene.", "question": "Where does the <bbox> go?"},
        {"video": "videos/yard", "frame": 2, "box": second.objects["walker"].boxes[2], "caption": "A block moves."},
        {"video": "videos/broken.mp4", "frame": 0, "box": [1, 1, 20, 20], "caption": "never built"},
    ]
    requests = tmp_path / "targets.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "own_dataset"
    clip = Path("artemis-sample/tiny/clip").resolve()
    args = ["data", "build-referring", requests, out, "--clip-model", clip, "--cache-dir", tmp_path / "cache",
            "--device", "cpu", "--json"]
    result = invoke(args)
    assert result.exit_code == 1, result.output  # the broken video failed
    summary = json.loads(result.stdout)
    assert (summary["videos"], summary["built"], summary["failed"], summary["records"]) == (3, 2, 1, 3)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["video"], f["line"]) for f in failures] == [("videos/broken.mp4", 4)]
    records = json.loads((out / "annotations" / "own_referring.json").read_text())
    assert [r["caption"] for r in records] == [line["caption"] for line in lines[:3]]
    assert records[1]["question"] == "Where does the <bbox> go?" and "question" not in records[0]
    assert records[0]["frame_path"] == records[1]["frame_path"] == "own/frames/street"
    assert records[2]["clip_path"] == "own/clip_feature/yard.pkl" and records[2]["key_frame_id"] == "00002.jpg"
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"

    verify = invoke(["data", "verify-layout", out, "--stage", "none", "--annotations", out / "annotations",
                     "--check-features", "--json"])
    assert verify.exit_code == 0, verify.output
    report = json.loads(verify.stdout)
    assert report["counts"]["records"] == 3 and report["counts"]["feature_files_checked"] == 2

    # A rerun skips the finished videos, retries the failed one, and writes the same dataset.
    before = (out / "annotations" / "own_referring.json").read_text()
    again = json.loads(invoke(args).stdout)
    assert (again["skipped"], again["built"], again["failed"]) == (2, 0, 1)
    assert (out / "annotations" / "own_referring.json").read_text() == before
    other = invoke([*args[:-1], "--stride", "2"])
    assert other.exit_code == 2 and "other settings" in other.output

    train = CliRunner().invoke(app, ["train", "stage3", "-c", str(CONFIG), "--json", "--set", f"data.root={out}",
                                     "--set", f"data.annotations=[{out / 'annotations'}]", "--set", "train.max_steps=2",
                                     "--set", "train.save_steps=100", "-o", "artemis-sample/runs/own"])
    assert train.exit_code == 0, train.output
    done = json.loads(train.stdout[train.stdout.index("{"):])
    assert done["global_step"] == 2
    assert (train_workspace / "artemis-sample/runs/own/non_lora_trainables.bin").is_file()
    shutil.rmtree(tmp_path / "cache")
