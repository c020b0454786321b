import hashlib
import json

from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.feature_files import load_feature
from artemis_cli.data.layout import SOURCES
from artemis_cli.data.verify import verify_layout

runner = CliRunner()


def _tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_sample_is_complete_and_verifies_clean(sample):
    for source in SOURCES:
        folder = sample.data_root / source.path
        assert folder.is_dir() and any(folder.iterdir()), source.path
    report = verify_layout(sample.data_root, sample.annotations, check_features=True)
    assert report.ok, [p.message for p in report.problems]
    assert report.counts["records_by_kind"] == {
        "conversation": 9, "qa_answers": 4, "qa_questions": 4, "referring": 6, "vcg": 4, "vcg_consistency": 2}
    assert report.counts["feature_width"] == 64


def test_sample_holds_every_record_kind_and_real_media(sample):
    ann = sample.annotations
    expected = {"stage1/pretrain.json", "stage2/instruct.json", "stage2/text_only.json", "stage3/hc_stvg_train.json",
                "stage3/got10k.json", "stage3/mgit.json", "videorefbench/hc_stvg_val.json", "msvd_qa/test_q.json",
                "msvd_qa/test_a.json", "vcgbench/generic_qa.json", "vcgbench/temporal_qa.json", "vcgbench/consistency_qa.json"}
    assert {str(p.relative_to(ann)) for p in ann.rglob("*.json")} == expected
    stage2 = json.loads((ann / "stage2/instruct.json").read_text())
    assert any("image" in r and "video" in r for r in stage2)
    bench = json.loads((ann / "videorefbench/hc_stvg_val.json").read_text())
    assert all(r["video_name"] and r["question"].count("<bbox>") == 1 for r in bench)
    import decord

    videos = sorted((sample.data_root / "Artemis_data/HC-STVG/videos").glob("*.mp4"))
    assert len(videos) == 2
    reader = decord.VideoReader(str(videos[0]))
    assert len(reader) == 24 and reader[0].shape == (64, 96, 3)
    feature = load_feature(sample.data_root / "Artemis_data/HC-STVG/clip_feature/hcstvg_000.pkl")
    assert feature.shape == (356, 64) and feature.dtype.name == "float16"


def test_track_lists_are_the_true_target_boxes(sample):
    """The sample's boxes must point at the coloured target in the frame they annotate."""
    from PIL import Image
    import numpy as np

    record = json.loads((sample.annotations / "stage3/hc_stvg_train.json").read_text())[0]
    index = next(i for i, box in enumerate(record["track_list"]) if box)
    x1, y1, x2, y2 = record["track_list"][index]
    frame = np.asarray(Image.open(sample.data_root / "Artemis_data" / record["frame_path"] / record["frame_id"][index]))
    inside = frame[y1 + 2:y2 - 2, x1 + 2:x2 - 2].reshape(-1, 3).astype(float)
    colour = inside.mean(0)
    assert inside.std(0).max() < 20  # a flat coloured box, not background texture
    assert record["caption"].split()[1] in {"red", "blue", "green", "yellow"}
    assert colour.max() - colour.min() > 80  # strongly coloured


def test_make_sample_cli_is_deterministic_small_and_prints_next_step(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    result = runner.invoke(app, ["data", "make-sample", str(first)])
    assert result.exit_code == 0, result.output
    assert f"artemis data verify-layout {first}/DATA_ROOT --annotations {first}/annotations --check-features" in result.output.replace("\n", "")
    runner.invoke(app, ["data", "make-sample", str(second)])
    assert _tree_digest(first) == _tree_digest(second)
    size = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024
    result = runner.invoke(app, ["data", "verify-layout", f"{first}/DATA_ROOT", "--annotations", f"{first}/annotations",
                                 "--check-features", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["counts"]["feature_width"] == 1024


def test_make_sample_refuses_to_overwrite_without_flag(tmp_path):
    assert runner.invoke(app, ["data", "make-sample", str(tmp_path), "--feature-dim", "8"]).exit_code == 0
    result = runner.invoke(app, ["data", "make-sample", str(tmp_path), "--feature-dim", "8"])
    assert result.exit_code == 2 and "already exists" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["data", "make-sample", str(tmp_path), "--feature-dim", "8", "--seed", "1", "--overwrite"])
    assert result.exit_code == 0


def test_classes_sample_has_distinct_clear_targets_square_frames_and_stage2_descriptions(tmp_path):
    """`--motion classes` (the toy recipe's data): every video's boxes differ in colour and in caption motion,
    never overlap, move clearly (or not at all), and stage 2 gets one description per training video."""
    from artemis_cli.data.sample import make_sample
    from artemis_cli.data.synthetic_video import MIN_TRAVEL, MOTIONS, _overlap, two_box_video

    summary = make_sample(tmp_path / "toy", seed=3, videos=6, feature_dim=8, targets=2, motion="classes",
                          size=(112, 112))
    records = json.loads((summary.annotations / "stage3/hc_stvg_train.json").read_text())
    bench = json.loads((summary.annotations / "videorefbench/hc_stvg_val.json").read_text())
    assert len(records) == 10 and len(bench) == 2
    by_video = {}
    for record in records + bench:
        by_video.setdefault(record["clip_path"], []).append(record)
    for pair in by_video.values():
        colours = [r["caption"].split()[1] for r in pair]
        motions = [r["caption"].split(" moves ")[1].removesuffix(" across the scene.") for r in pair]
        assert len(set(colours)) == 2 and len(set(motions)) == 2 and set(motions) <= set(MOTIONS), pair
    described = json.loads((summary.annotations / "stage2/hcstvg_captions.json").read_text())
    assert len(described) == 5 and all(d["conversations"][1]["value"].count("box moves") == 2 for d in described)
    assert (summary.data_root / described[0]["video_clip"]).is_file()  # from DATA_ROOT, as stage 2 resolves it
    from PIL import Image

    with Image.open(summary.data_root / "Artemis_data" / records[0]["frame_path"] / records[0]["frame_id"][0]) as frame:
        assert frame.size == (112, 112)
    for seed in range(40):
        video = two_box_video(seed)
        a, b = video.targets
        assert a.colour != b.colour and a.motion() != b.motion() and not _overlap(a.boxes, b.boxes, 0)
        for target in video.targets:
            (x1, y1, _, _), (x2, y2, _, _) = target.boxes[0], target.boxes[-1]
            assert all(abs(d) == 0 or abs(d) >= 3 * MIN_TRAVEL for d in (x2 - x1, y2 - y1)), target


def test_make_sample_cli_takes_targets_motion_and_size(tmp_path):
    result = runner.invoke(app, ["data", "make-sample", str(tmp_path / "a"), "--videos", "3", "--targets", "3",
                                 "--motion", "classes", "--size", "64x48", "--feature-dim", "8", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "a/annotations/stage3/hc_stvg_train.json").read_text())
    assert len(records) == 6 and len({r["caption"].split()[1] for r in records[:3]}) == 3
    for bad, message in ((["--size", "64by48"], "--size '64by48': expected WIDTHxHEIGHT"),
                         (["--size", "8x8"], "--size 8x8: expected WIDTHxHEIGHT, each from 32"),
                         (["--targets", "5"], "--targets"), (["--motion", "wild"], "--motion")):
        result = runner.invoke(app, ["data", "make-sample", str(tmp_path / "b"), *bad])
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_default_sample_videos_are_unchanged_by_the_motion_option():
    """`motion="free"` (the default) draws what the sample always drew (boxes recorded before `motion` existed)."""
    import numpy as np

    from artemis_cli.data.synthetic_video import make_video

    video = make_video(np.random.default_rng([0, 1234]), 24, 96, 64, 2)
    assert [t.motion() for t in video.targets] == ["The green box moves to the right and upwards across the scene.",
                                                   "The yellow box moves to the left across the scene."]
    assert [[t.boxes[0], t.boxes[-1]] for t in video.targets] == [[[12, 11, 33, 23], [34, 4, 55, 16]], [[33, 36, 55, 55], [29, 38, 51, 57]]]
