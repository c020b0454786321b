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
