"""The toy recipe (`demo/toy.py`) and its held-out evaluation (`demo/learn.py`): the shipped toy model answers about
the boxed target of fresh videos and stops doing so when the box cannot reach it; reading answers; the background
box; train-toy's folder and option checks; a small recipe trained from scratch beats chance (slow)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.demo.learn import CHANCE, background_box, read_caption

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_read_caption_takes_colour_and_motion_from_the_captions_words():
    assert read_caption("The red box moves to the left and upwards across the scene.") == ("red", "to the left and upwards")
    assert read_caption("The blue box moves around in place across the scene.") == ("blue", "around in place")
    assert read_caption("The green box moves sideways across the scene.") == ("green", None)
    assert read_caption("a yellow thing") == ("yellow", None)
    assert read_caption("The the the") == (None, None)


def test_background_box_keeps_clear_of_every_target_in_every_frame():
    a = {"track_list": [[10, 10, 30, 30], [], [20, 10, 40, 30]]}
    b = {"track_list": [[60, 60, 80, 80], [60, 62, 80, 82], [60, 64, 80, 84]]}
    box = background_box([a, b], a, (112, 112))
    assert box is not None and box[2] - box[0] == 20 and box[3] - box[1] == 20
    for record in (a, b):
        for other in filter(None, record["track_list"]):
            assert box[2] + 3 <= other[0] or other[2] + 3 <= box[0] or box[3] + 3 <= other[1] or other[3] + 3 <= box[1]
    assert background_box([{"track_list": [[0, 0, 112, 112]]}], {"track_list": [[0, 0, 50, 50]]}, (112, 112)) is None


def test_train_toy_refuses_a_folder_it_did_not_make_and_bad_overrides(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = runner.invoke(app, ["model", "train-toy", str(tmp_path)])
    assert result.exit_code == 2 and "holds no earlier train-toy run" in result.output
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    result = runner.invoke(app, ["model", "train-toy", str(tmp_path / "new"), "--set", "train.epochs=2"])
    assert result.exit_code == 2 and "expected stageN.key=value" in result.output
    assert not (tmp_path / "new").exists()


def test_every_toy_config_validates():
    from artemis_cli.demo.toy import CONFIGS
    from artemis_cli.train.config import load_train_config

    for stage in (1, 2, 3):
        config = load_train_config(stage, CONFIGS / f"toy_stage{stage}.yaml", check_paths=False)
        assert config.train.precision == "fp32" and config.train.deepspeed is None
    assert config.model.roi.num_levels == 2 and config.lora is not None


@pytest.fixture(scope="module")
def shipped_on_held_out(tmp_path_factory):
    """The shipped toy model (`--model toy`) asked about 4 fresh held-out videos (8 targets)."""
    from artemis_cli.common.hub import toy_model_folder
    from artemis_cli.demo.toy import evaluate_model, held_out_sample

    model = toy_model_folder()
    sample = held_out_sample(tmp_path_factory.mktemp("held_out") / "sample", seed=11, videos=4, clip=model / "clip")
    return evaluate_model(model, sample)


def test_the_shipped_toy_model_names_the_boxed_targets_colour_and_not_without_the_box(shipped_on_held_out):
    report = shipped_on_held_out
    boxed, background, zeroed = (report.conditions[c] for c in ("boxed", "background", "roi_zeroed"))
    assert report.videos == 4 and boxed.questions == 8 and zeroed.questions == 8
    assert all(read_caption(a["answer"])[1] is not None for a in report.answers), report.answers  # caption words
    assert boxed.colour >= 7 / 8, report.answers  # measured 96% on 25 videos (benchmarks/RESULTS.md)
    # the controls: the box cannot reach the answer (zeroed RoI tokens: A and B get the same answer) or points at
    # nothing, so at most one answer of a pair can be right
    assert zeroed.colour <= 0.5 and background.colour <= 0.5, report.answers
    for video in {a["video"] for a in report.answers}:
        zeroed_answers = {a["answer"] for a in report.answers if a["video"] == video and a["condition"] == "roi_zeroed"}
        assert len(zeroed_answers) == 1


@pytest.mark.xfail(strict=True, reason="issue 25's direction goal is not met yet: the shipped toy model names the "
                                        "colour but not the motion (benchmarks/RESULTS.md)")
def test_the_shipped_toy_model_names_the_boxed_targets_motion(shipped_on_held_out):
    assert shipped_on_held_out.conditions["boxed"].direction >= 0.85 > CHANCE["direction"]


SMALL_RECIPE = ["--videos", "24", "--held-out", "6", "--set", "stage3.train.max_steps=150",
                "--set", "stage3.data.num_tracked=4", "--set", "stage3.train.save_steps=1000"]


@pytest.mark.slow
def test_a_small_recipe_trained_from_scratch_names_the_boxed_colour_and_stage3_reruns_bit_for_bit(tmp_path):
    """train-toy end to end at a smaller size (24 videos, 150 stage-3 steps over 4 tracked frames; about 90 s): the
    held-out colour beats chance by a wide margin and only with the box; then stage 3 run twice from the same
    stage-2 model gives the same weights (the shipped model was rebuilt bit for bit: benchmarks/RESULTS.md)."""
    from safetensors.torch import load_file
    import torch

    out = tmp_path / "toy"
    result = runner.invoke(app, ["model", "train-toy", str(out), *SMALL_RECIPE, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    conditions = summary["learn"]["conditions"]
    assert [step["status"] for step in summary["steps"]] == ["ok"] * 8
    assert conditions["boxed"]["questions"] == 12
    assert conditions["boxed"]["colour"] >= 0.75 >= CHANCE["colour"] + 0.5, conditions  # measured 100%
    assert conditions["roi_zeroed"]["colour"] <= 0.5 and conditions["background"]["colour"] <= 0.5, conditions
    assert (out / "model" / "config.json").is_file() and (out / "learn.json").is_file()

    weights = []
    for name in ("again", "and_again"):
        run = runner.invoke(app, ["train", "stage3", "-c", str(out / "configs" / "stage3.yaml"), "-o", str(tmp_path / name),
                                  "--set", "train.max_steps=6", "--set", "data.num_tracked=4", "--json"])
        assert run.exit_code == 0, run.output
        lora = load_file(tmp_path / name / "adapter_model.safetensors")
        rest = torch.load(tmp_path / name / "non_lora_trainables.bin", weights_only=True)
        weights.append({**lora, **rest})
    assert weights[0].keys() == weights[1].keys() and any("spi_model" in key for key in weights[0])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    first = torch.load(out / "runs" / "stage3" / "non_lora_trainables.bin", weights_only=True)
    assert not all(torch.equal(first[key], weights[0][key]) for key in first)  # 6 steps are not 150


def test_ask_with_model_toy_on_an_mp4_answers_the_boxed_box(tmp_path):
    """`artemis ask --model toy` through the own-video path (decode, CSRT track, features, RoI frames) on a generated
    two-box video: box A, then box B, each answer names its own box's colour."""
    from artemis_cli.data.synthetic_video import encode_mp4, two_box_video

    video = two_box_video(123)
    path = tmp_path / "two_boxes.mp4"
    path.write_bytes(encode_mp4(video.frames))
    for target in video.targets:
        box = ",".join(str(v) for v in target.boxes[0])
        result = runner.invoke(app, ["ask", str(path), "--box", box, "--model", "toy", "--device", "cpu",
                                     "--cache-dir", str(tmp_path / "cache"), "--json"])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)["answer"]
        assert read_caption(answer)[0] == target.colour, (target.motion(), answer)
