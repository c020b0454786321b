"""`artemis track`, `ask`, `ask --batch` and `chat` through the CLI, on generated videos and the sharpened tiny Artemis."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from ownvideo_helpers import MAX_NEW, box_arg, sharpened, tracked_frames, video_file


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sharp_dir(tiny_artemis, tmp_path_factory):
    return sharpened(tiny_artemis, tmp_path_factory.mktemp("sharp") / "artemis")[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return video_file(tmp_path_factory.mktemp("video"), n_frames=16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def invoke(args, input=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def walker(clip, frame=0) -> str:
    return box_arg(clip[1].objects["walker"].boxes[frame])


def model_args(sharp_dir, cache) -> list:
    return ["--model", sharp_dir, "--cache-dir", cache, "--device", "cpu", "--max-new-tokens", MAX_NEW]


def test_track_writes_a_record_that_verify_layout_accepts(clip, cache, tiny_clip_dir, tmp_path):
    out = tmp_path / "out" / "track.json"
    preview = tmp_path / "out" / "track.png"
    result = invoke(["track", clip[0], "--box", walker(clip, 2), "--frame", 2, "--stride", 2, "-o", out,
                     "--clip-model", tiny_clip_dir, "--preview", preview, "--cache-dir", cache, "--device", "cpu",
                     "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    [record] = json.loads(out.read_text())
    assert summary["record"] == record
    assert record["frame_id"] == [f"{i:05d}.jpg" for i in (0, 2, 4, 6, 8, 10, 12, 14)]
    assert record["key_frame_id"] == "00002.jpg" and record["track_list"][1] == record["key_frame_box"]
    frames = out.parent / "Artemis_data" / record["frame_path"]
    assert sorted(p.name for p in frames.iterdir()) == record["frame_id"]  # only the frames the record names
    assert (out.parent / "Artemis_data" / record["clip_path"]).is_file()
    from PIL import Image

    with Image.open(preview) as image:
        assert image.format == "PNG" and image.size[0] == 4 * 240
    verify = invoke(["data", "verify-layout", out.parent, "--stage", "none", "--annotations", out, "--check-features",
                     "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.stdout)["counts"]["records"] == 1
    again = invoke(["track", clip[0], "--box", walker(clip, 2), "--frame", 2, "-o", out, "--clip-model", "none",
                    "--cache-dir", cache])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize("args, code, message", [
    (["--box", "10,10,400,50"], 2, "outside frame 0"),
    (["--box", "50,10,40,50"], 2, "x1 < x2"),
    (["--box", "10,10,40"], 2, "four numbers"),
    (["--box", "10,10,40,50", "--frame", "99"], 2, "has 16 frame"),
    (["--box", "10,10,40,50", "--tracker", "sam2"], 2, "--tracker-model"),
    (["--box", "10,10,40,50", "--tracker", "mosse"], 2, "--tracker 'mosse'"),
])
def test_track_bad_input_is_one_error_line_and_writes_nothing(clip, cache, tmp_path, args, code, message):
    out = tmp_path / "track.json"
    result = invoke(["track", clip[0], *args, "-o", out, "--clip-model", "none", "--cache-dir", cache])
    assert result.exit_code == code, result.output
    assert message in result.output and result.output.count("error:") == 1
    assert not out.exists() and not (tmp_path / "Artemis_data").exists()


def test_track_undecodable_video_and_empty_folder_fail_with_exit_1(cache, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    (tmp_path / "frames").mkdir()
    for video, message in ((broken, "cannot decode"), (tmp_path / "frames", "no image files")):
        result = invoke(["track", video, "--box", "1,1,9,9", "-o", tmp_path / "t.json", "--clip-model", "none",
                         "--cache-dir", cache])
        assert result.exit_code == 1 and message in result.output, result.output
    missing = invoke(["track", tmp_path / "nope.mp4", "--box", "1,1,9,9", "--cache-dir", cache])
    assert missing.exit_code == 2 and "no such video" in missing.output
    (tmp_path / "frames" / "00000.jpg").write_bytes(b"")
    inside = invoke(["track", tmp_path / "frames", "--box", "1,1,9,9", "-o", tmp_path / "frames" / "t.json",
                     "--cache-dir", cache])
    assert inside.exit_code == 2 and "lies inside the input" in inside.output


@pytest.mark.slow
def test_ask_prints_the_answer_and_json(clip, sharp_dir, cache):
    result = invoke(["ask", clip[0], "--box", walker(clip), *model_args(sharp_dir, cache), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"answer", "question", "model", "track", "frames_used", "settings", "timings"}
    assert doc["model"] == "artemis" and doc["settings"]["decoding"]["mode"] == "greedy"
    assert doc["question"].count("<bbox>") == 1 and len(doc["frames_used"]) == 9
    assert doc["track"]["frames"] == tracked_frames(16) and doc["track"]["key_frame"] == 0
    assert {"startup", "question", "decode", "track", "features", "generate"} <= set(doc["timings"])
    plain = invoke(["ask", clip[0], "--box", walker(clip), *model_args(sharp_dir, cache)])
    assert plain.exit_code == 0 and plain.stdout.strip() == doc["answer"]
    assert "answered " in plain.stderr and "after start: imports " in plain.stderr and "model loaded (ready at" in plain.stderr
    bad = invoke(["ask", clip[0], "What is it doing?", "--box", walker(clip), *model_args(sharp_dir, cache)])
    assert bad.exit_code == 2 and "exactly one <bbox>" in bad.output and "hint:" in bad.output


@pytest.mark.slow
def test_ask_start_up_counts_the_imports_and_the_model_load(clip, sharp_dir, cache):
    """In a real process: the reported start-up covers the imports (torch, transformers), not only the
    model load, and the reported total accounts for most of the wall time."""
    import subprocess
    import sys
    import time

    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "artemis_cli", "ask", str(clip[0]), "--box", walker(clip),
                           *map(str, model_args(sharp_dir, cache)), "--json"], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    timings = json.loads(done.stdout)["timings"]
    assert 0 < timings["imports"] < timings["startup"] < timings["total"]
    assert timings["total"] >= 0.7 * wall and timings["imports"] + timings["question"] == pytest.approx(
        timings["total"], abs=0.01), (timings, wall)


@pytest.mark.slow
def test_ask_batch_is_resumable_and_lists_failures(clip, sharp_dir, cache, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 500)
    lines = [{"id": "a", "video": str(clip[0]), "box": clip[1].objects["walker"].boxes[0]},
             {"id": "b", "video": "broken.mp4", "frame": 0, "box": [1, 1, 9, 9]},
             {"id": "c", "video": str(clip[0]), "frame": 3, "box": clip[1].objects["leaver"].boxes[3],
              "question": "Where does the <bbox> go?"}]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    clean, resumed = tmp_path / "clean.jsonl", tmp_path / "resumed.jsonl"
    args = ["ask", "--batch", requests, *model_args(sharp_dir, cache), "--batch-size", 2, "--json"]
    first = invoke([*args, "-o", clean])
    assert first.exit_code == 1, first.output  # one request failed
    summary = json.loads(first.stdout)
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert [json.loads(l)["id"] for l in (tmp_path / "clean.errors.jsonl").read_text().splitlines()] == ["b"]
    answers = [json.loads(line) for line in clean.read_text().splitlines()]
    assert [a["id"] for a in answers] == ["a", "c"] and answers[1]["question"] == "Where does the <bbox> go?"
    # A kill after the first answer, in the middle of writing the second: rerun loses and repeats nothing.
    invoke([*args, "-o", resumed])
    text = resumed.read_text().splitlines(keepends=True)
    resumed.write_text(text[0] + text[1][:15])
    again = invoke([*args, "-o", resumed])
    assert json.loads(again.stdout)["skipped"] == 1 and json.loads(again.stdout)["done"] == 1
    assert resumed.read_text() == clean.read_text()
    other = invoke([*args[:-1], "--seed", 5, "-o", resumed])
    assert other.exit_code == 2 and "other settings" in other.output
    requests.write_text('{"id": "x", "video": "v.mp4", "box": [1, 2, 3]}\n')
    bad = invoke([*args, "-o", tmp_path / "bad.jsonl"])
    assert bad.exit_code == 1 and f"{requests}:1: box" in bad.output


@pytest.mark.slow
def test_chat_with_piped_stdin(clip, sharp_dir, cache, tmp_path):
    transcript = tmp_path / "chat.json"
    script = "\n".join(["What is the <bbox> doing?", "And where does it go?", "What colour is the <bbox>?",
                        f"/box {box_arg(clip[1].objects['leaver'].boxes[1])} 1", "", f"/save {transcript}", "/quit",
                        "never asked <bbox>"]) + "\n"
    result = invoke(["chat", clip[0], "--box", walker(clip), *model_args(sharp_dir, cache)], input=script)
    assert result.exit_code == 0, result.output
    saved = json.loads(transcript.read_text())
    first, second = saved["conversations"]
    # a follow-up's <bbox> is the same target, asked as "the target" (the first question carries the boxes)
    assert [t["question"] for t in first["turns"]] == ["What is the <bbox> doing?", "And where does it go?",
                                                      "What colour is the target?"]
    assert second["frame"] == 1 and [t["question"] for t in second["turns"]] == ["What is the <bbox> doing in this video?"]
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert answers == [t["answer"] for t in first["turns"] + second["turns"]]
    assert "(a follow-up's <bbox> is the same target: asked as 'What colour is the target?')" in result.stderr
    assert "ready at" in result.stderr and "the target tracked meanwhile" in result.stderr  # loaded while tracking


def test_offline_the_default_clip_fails_in_seconds_naming_clip_model(clip, tmp_path):
    """No network and no cached CLIP: one error line naming --clip-model within seconds, before any
    tracking (it printed ~80 s of hub retries, then a hint naming --model). A missing --model folder is
    bad usage (exit 2), as every missing input path is."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HTTPS_PROXY", None)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "artemis_cli", "track", str(clip[0]), "--box", walker(clip),
                           "-o", str(tmp_path / "t.json"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert time.monotonic() - began < 60
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == ("error: --clip-model openai/clip-vit-large-patch14: no such folder, not in the Hugging "
                        "Face cache, and the hub cannot be reached (offline)"), done.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "Retrying" not in done.stderr
    assert not (tmp_path / "cache" / "tracks").exists()  # nothing was tracked first
    missing = invoke(["ask", clip[0], "--box", walker(clip), "--model", tmp_path / "no-model", "--device", "cpu"])
    assert missing.exit_code == 2 and f"error: --model {tmp_path / 'no-model'}: no such folder" in missing.stderr
