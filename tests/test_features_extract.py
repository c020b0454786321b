"""`extract_features` / `artemis features extract` against an independent implementation of the recipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.feature_files import load_feature
from artemis_cli.data.synthetic_video import encode_mp4, make_video
from artemis_cli.features.extract import ExtractConfig, extract_features

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def reference_features(frames: np.ndarray, model_dir: Path) -> np.ndarray:
    """The recipe written out plainly: all decoded frames [N, H, W, 3] -> [100 + 256, C] float16."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionModel

    total = len(frames)
    count = min(total, 100)
    segment = float(total - 1) / count
    picks = [(int(np.round(segment * i)) + int(np.round(segment * (i + 1)))) // 2 for i in range(count)]
    chosen = torch.from_numpy(frames[picks]).permute(0, 3, 1, 2).float()
    if chosen.shape[-2:] != (224, 224):
        chosen = F.interpolate(chosen, size=(224, 224))
    images = [Image.fromarray(a) for a in chosen.permute(0, 2, 3, 1).to(torch.uint8).numpy()]
    pixels = CLIPImageProcessor.from_pretrained(model_dir)(images, return_tensors="pt")["pixel_values"]
    model = CLIPVisionModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        hidden = model(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    features = hidden.numpy().astype(np.float16)
    temporal = np.pad(np.mean(features, axis=1), ((0, 100 - count), (0, 0)))
    return np.concatenate([temporal, np.mean(features, axis=0)]).astype(np.float16)


def decode_all(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def assert_recipe_close(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape and ours.dtype == np.float16
    # Only the summation order of the means differs: at most one float16 step, on few elements.
    np.testing.assert_allclose(ours.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert (ours == expected).mean() > 0.97


def write_videos(folder: Path, count: int, seed: int = 0, frames: int = 12, size: tuple[int, int] = (48, 32)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        video = make_video(rng, frames, size[0], size[1], 1)
        (folder / f"clip_{index:02d}.mp4").write_bytes(encode_mp4(video.frames))


def config(input: Path, output: Path, model: Path, **extra) -> ExtractConfig:
    return ExtractConfig(**{"input": input, "output": output, "model": str(model), "device": "cpu", "workers": 0, **extra})


def test_videos_match_reference_recipe(sample, tiny_clip_dir, tmp_path):
    videos = sample.data_root / "Artemis_data/HC-STVG/videos"
    out = tmp_path / "out"
    result = runner.invoke(app, ["features", "extract", str(videos), str(out), "--model", str(tiny_clip_dir),
                                 "--device", "cpu", "--workers", "1", "--batch-size", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["written"] == 2 and summary["failed"] == 0 and summary["readers"] == {"decord": 2}
    for video in sorted(videos.glob("*.mp4")):
        ours = load_feature(out / f"{video.stem}.pkl")
        assert ours.shape == (356, 64)
        assert_recipe_close(ours, reference_features(decode_all(video), tiny_clip_dir))
        assert not ours[24:100].any() and np.abs(ours[:24]).sum(axis=1).min() > 0  # 24 frames, zero-padded
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["written"] == 2
    assert manifest["model"]["layer"] == -2 and manifest["recipe"]["output_shape"] == [356, 64]
    assert (out / "failures.jsonl").read_text() == ""


def test_frame_folders_large_frames_and_numeric_order(tiny_clip_dir, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    video = make_video(rng, 11, 320, 240, 2)  # larger than 224: the worker squashes it
    folder = tmp_path / "frames" / "seq.001"
    folder.mkdir(parents=True)
    for index, frame in enumerate(video.frames, start=1):
        Image.fromarray(frame).save(folder / f"{index}.png")  # 1.png ... 11.png, not zero-padded
    summary = extract_features(config(tmp_path / "frames", tmp_path / "out", tiny_clip_dir, frames=True,
                                      batch_size=4, workers=1), show_progress=False)
    assert summary.written == 1 and summary.readers == {"frames": 1}
    ours = load_feature(tmp_path / "out" / "seq.001.pkl")  # folder names keep every dot
    assert_recipe_close(ours, reference_features(video.frames, tiny_clip_dir))


def test_corrupt_video_is_recorded_and_others_written(sample, tiny_clip_dir, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(sample.data_root / "Artemis_data/HC-STVG/videos", videos)
    (videos / "broken.MP4").write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "out"
    result = runner.invoke(app, ["features", "extract", str(videos), str(out), "--model", str(tiny_clip_dir),
                                 "--device", "cpu", "--workers", "0", "--num-frames", "8"])
    assert result.exit_code == 1
    assert "broken" in result.output
    lines = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [line["name"] for line in lines] == ["broken"] and "pyav" in lines[0]["reason"]
    assert sorted(p.name for p in out.glob("*.pkl")) == ["hcstvg_000.pkl", "hcstvg_001.pkl"]
    assert load_feature(out / "hcstvg_000.pkl").shape == (264, 64)  # 8 temporal rows + 256 patch rows
    assert json.loads((out / "manifest.json").read_text())["counts"]["failed"] == 1


def test_resume_skips_valid_and_redoes_broken(sample, tiny_clip_dir, tmp_path):
    videos = sample.data_root / "Artemis_data/HC-STVG/videos"
    out = tmp_path / "out"
    first = extract_features(config(videos, out, tiny_clip_dir, num_frames=8), show_progress=False)
    assert first.written == 2
    clean = {p.name: p.read_bytes() for p in out.glob("*.pkl")}
    (out / "hcstvg_000.pkl").write_bytes(clean["hcstvg_000.pkl"][:1000])  # torn file
    (out / ".hcstvg_001.pkl.abc12345.tmp").write_bytes(b"partial")  # left by a kill mid-write
    (out / ".other.pkl.abc12345.tmp").write_bytes(b"another shard's")
    again = extract_features(config(videos, out, tiny_clip_dir, num_frames=8), show_progress=False)
    assert (again.written, again.skipped) == (1, 1)
    assert {p.name: p.read_bytes() for p in out.glob("*.pkl")} == clean
    assert not (out / ".hcstvg_001.pkl.abc12345.tmp").exists() and (out / ".other.pkl.abc12345.tmp").exists()
    forced = extract_features(config(videos, out, tiny_clip_dir, num_frames=8, overwrite=True), show_progress=False)
    assert forced.written == 2


def test_shards_and_list_cover_every_video_once(tiny_clip_dir, tmp_path, monkeypatch):
    write_videos(tmp_path / "videos", 5, frames=6)
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    written = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)  # as torchrun sets it
        summary = extract_features(config(tmp_path / "videos", out, tiny_clip_dir, num_frames=4), show_progress=False)
        assert summary.num_shards == 2 and summary.shard_index == int(rank)
        written.append(summary.written)
    assert written == [3, 2]
    assert sorted(p.stem for p in out.glob("*.pkl")) == [f"clip_{i:02d}" for i in range(5)]
    assert (out / "manifest.shard-0-of-2.json").exists() and (out / "failures.shard-1-of-2.jsonl").exists()

    listed = tmp_path / "list.txt"
    listed.write_text("clip_03.mp4\n# comment\nclip_01\n")
    summary = extract_features(config(tmp_path / "videos", tmp_path / "out2", tiny_clip_dir, num_frames=4,
                                      list_file=listed, num_shards=1, shard_index=0), show_progress=False)
    assert summary.written == 2 and sorted(p.stem for p in (tmp_path / "out2").glob("*.pkl")) == ["clip_01", "clip_03"]
    listed.write_text("nope.mp4\n")
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "videos"), str(tmp_path / "out3"),
                                 "--list", str(listed), "--model", str(tiny_clip_dir), "--device", "cpu"])
    assert result.exit_code == 1 and "not in the input folder: nope.mp4" in result.output


def test_usage_errors(tmp_path):
    (tmp_path / "in").mkdir()
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "in"), str(tmp_path / "o"), "--backend", "tf"])
    assert result.exit_code == 2 and "--backend" in result.output  # a choice: refused while parsing
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "in"), str(tmp_path / "o"),
                                 "--dtype", "int8", "--device", "tpu"])
    assert result.exit_code == 2
    for where in ("dtype:", "device:"):
        assert where in result.output
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "in"), str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 1 and "no videos" in result.output and "--frames" in result.output


@pytest.mark.slow
def test_kill_and_rerun_gives_clean_run_outputs(tiny_clip_dir, tmp_path):
    write_videos(tmp_path / "videos", 6, seed=3, frames=16)
    args = ["--model", str(tiny_clip_dir), "--device", "cpu", "--workers", "0", "--batch-size", "16"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "artemis_cli", "features", "extract", str(tmp_path / "videos"),
                                str(killed), *args, "--json"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(killed.glob("*.pkl")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(killed.glob("*.pkl")))
    assert 1 <= done_before < 6, "the kill must land mid-run"
    rerun = runner.invoke(app, ["features", "extract", str(tmp_path / "videos"), str(killed), *args, "--json"])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["skipped"] == done_before
    clean = tmp_path / "clean"
    result = runner.invoke(app, ["features", "extract", str(tmp_path / "videos"), str(clean), *args, "--json"])
    assert result.exit_code == 0
    expected = {p.name: p.read_bytes() for p in clean.glob("*.pkl")}
    assert len(expected) == 6
    assert {p.name: p.read_bytes() for p in killed.glob("*.pkl")} == expected
    assert not list(killed.glob(".*.tmp"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_half_precision_matches_cpu(sample, tiny_clip_dir, tmp_path, dtype):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    videos = sample.data_root / "Artemis_data/HC-STVG/videos"
    cpu = extract_features(config(videos, tmp_path / "cpu", tiny_clip_dir), show_progress=False)
    gpu = extract_features(ExtractConfig(input=videos, output=tmp_path / "gpu", model=str(tiny_clip_dir), device="cuda",
                                         dtype=dtype, workers=2, batch_size=32), show_progress=False)
    assert cpu.written == gpu.written == 2 and gpu.device.startswith("cuda:") and gpu.dtype == dtype
    for path in (tmp_path / "cpu").glob("*.pkl"):
        a = load_feature(path).astype(np.float64).ravel()
        b = load_feature(tmp_path / "gpu" / path.name).astype(np.float64).ravel()
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= (0.9999 if dtype == "float16" else 0.999)


@pytest.mark.slow
def test_a_rerun_with_another_recipe_is_refused_under_either_manifest_name(tiny_clip_dir, tmp_path):
    """The settings check reads this shard's earlier manifest, also under the zero-padded name that
    versions before the one sharding rule wrote (manifest.shard-000-of-002.json)."""
    from artemis_cli.errors import UsageError

    write_videos(tmp_path / "videos", 2, frames=6)
    out = tmp_path / "out"
    first = extract_features(config(tmp_path / "videos", out, tiny_clip_dir, num_frames=4, num_shards=2, shard_index=0),
                             show_progress=False)
    assert first.written == 1 and (out / "manifest.shard-0-of-2.json").is_file()
    (out / "manifest.shard-0-of-2.json").rename(out / "manifest.shard-000-of-002.json")
    with pytest.raises(UsageError, match=r"other settings \(recipe\)"):
        extract_features(config(tmp_path / "videos", out, tiny_clip_dir, num_frames=5, num_shards=2, shard_index=0),
                         show_progress=False)
    again = extract_features(config(tmp_path / "videos", out, tiny_clip_dir, num_frames=4, num_shards=2, shard_index=0),
                             show_progress=False)
    assert (again.written, again.skipped) == (0, 1)  # same recipe: the finished video is kept
    redo = extract_features(config(tmp_path / "videos", out, tiny_clip_dir, num_frames=5, num_shards=2, shard_index=0,
                                   overwrite=True), show_progress=False)
    assert redo.written == 1
