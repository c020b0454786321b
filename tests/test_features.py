"""Units of `artemis_cli.features`: frame sampling, nearest indices, decoding, listing, inspect."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.feature_files import save_feature
from artemis_cli.errors import InputError, UsageError
from artemis_cli.features.decoding import (DecodeError, VideoSource, decode_video, list_sources, natural_key,
                                           read_frame_folder)
from artemis_cli.features.inspect import inspect_features
from artemis_cli.features.recipe import VideoPooler, nearest_source_indices, resize_nearest_numpy, sample_frame_indices

runner = CliRunner()


def published_seq_frames(total: int, desired: int) -> list[int]:
    """The published `get_seq_frames`, written out as a loop."""
    seg_size = float(total - 1) / desired
    seq = []
    for i in range(desired):
        start = int(np.round(seg_size * i))
        end = int(np.round(seg_size * (i + 1)))
        seq.append((start + end) // 2)
    return seq


@pytest.mark.parametrize("total", [1, 2, 5, 24, 99, 100, 101, 150, 201, 333, 1000, 4567])
def test_sample_frame_indices_match_published(total):
    assert sample_frame_indices(total, 100) == published_seq_frames(total, min(total, 100))


def test_sample_frame_indices_known_values():
    # Short videos: as many samples as frames, but segments over total-1 repeat a middle frame and
    # never reach the last one. That is the published behaviour, kept.
    assert sample_frame_indices(24, 100) == list(range(13)) + list(range(12, 23))
    assert sample_frame_indices(5, 100) == [0, 1, 2, 2, 3]
    assert sample_frame_indices(201, 100)[:4] == [1, 3, 5, 7]
    assert sample_frame_indices(0, 100) == []


def test_nearest_indices_equal_torch_interpolate():
    import torch
    import torch.nn.functional as F

    for height, width in [(64, 96), (240, 320), (360, 640), (224, 224), (112, 112), (1080, 1920), (223, 225), (17, 500)]:
        frames = np.random.default_rng(height).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        ours = resize_nearest_numpy(frames, 224)
        reference = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(224, 224))
        reference = reference.permute(0, 2, 3, 1).to(torch.uint8).numpy()
        assert ours.shape == (2, 224, 224, 3)
        assert np.array_equal(ours, reference), (height, width)
    assert nearest_source_indices(112, 224).tolist()[:4] == [0, 0, 1, 1]


def test_device_preprocess_equals_clip_processor_on_nearest_frames(tiny_clip_dir):
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from transformers import CLIPImageProcessor

    from artemis_cli.features.recipe import Preprocess

    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    squashed = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(224, 224))
    images = [Image.fromarray(a) for a in squashed.permute(0, 2, 3, 1).to(torch.uint8).numpy()]
    expected = CLIPImageProcessor.from_pretrained(tiny_clip_dir)(images, return_tensors="pt")["pixel_values"]
    ours = Preprocess().to_pixels(torch.from_numpy(frames), torch.float32)
    assert ours.shape == (3, 3, 224, 224)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_center_crop_keeps_aspect_ratio():
    import torch

    from artemis_cli.features.recipe import Preprocess

    # Left third red, rest blue, 300 x 100: a squash keeps the red third, a centre crop shows only blue.
    frame = np.zeros((1, 100, 300, 3), dtype=np.uint8)
    frame[:, :, :100, 0] = 255
    frame[:, :, 100:, 2] = 255
    crop = Preprocess(resize="center-crop").to_pixels(torch.from_numpy(frame), torch.float32)
    squash = Preprocess(resize="nearest").to_pixels(torch.from_numpy(frame), torch.float32)
    assert crop.shape == squash.shape == (1, 3, 224, 224)
    assert (crop[0, 0] < 0).all()  # no red anywhere in the crop
    assert (squash[0, 0, :, :70] > 1).all()  # red in the left third of the squash


def test_pooler_matches_numpy_pooling():
    import torch

    rng = np.random.default_rng(0)
    features = rng.normal(size=(7, 16, 8)).astype(np.float32)
    pooler = VideoPooler(7, 10, 16, 8, torch.device("cpu"))
    pooler.add(torch.from_numpy(features[:3]))
    assert not pooler.complete
    pooler.add(torch.from_numpy(features[3:]))
    assert pooler.complete
    half = features.astype(np.float16)
    expected = np.concatenate([np.pad(half.mean(1), ((0, 3), (0, 0))), half.mean(0)])
    result = pooler.result().numpy()
    assert result.shape == (26, 8) and result.dtype == np.float16
    np.testing.assert_allclose(result.astype(np.float32), expected.astype(np.float32), atol=2e-3)
    assert not result[7:10].any()


def test_natural_sort_and_frame_folder_order(tmp_path):
    from PIL import Image

    assert sorted(["10.jpg", "2.jpg", "1.jpg"], key=natural_key) == ["1.jpg", "2.jpg", "10.jpg"]
    for value in range(1, 13):  # frame k has red value 10 * k, names not zero-padded
        Image.fromarray(np.full((8, 8, 3), 10 * value, dtype=np.uint8)).save(tmp_path / f"{value}.png")
    frames = read_frame_folder(tmp_path, 100)
    assert frames.shape == (12, 8, 8, 3)
    assert frames[:, 0, 0, 0].tolist() == [10 * (k + 1) for k in published_seq_frames(12, 12)]
    assert frames[:3, 0, 0, 0].tolist() == [10, 20, 30]  # lexicographic order would give 1, 10, 11
    assert read_frame_folder(tmp_path, 4)[:, 0, 0, 0].tolist() == [20, 50, 80, 100]


def test_decord_and_pyav_agree_and_corrupt_fails(sample, tmp_path):
    from artemis_cli.features import decoding

    video = next((sample.data_root / "Artemis_data/HC-STVG/videos").glob("*.mp4"))
    with_decord, reader = decode_video(video, 10)
    with_pyav = decoding._decode_pyav(video, 10)
    assert reader == "decord" and with_decord.shape == (10, 64, 96, 3)
    assert np.array_equal(with_decord, with_pyav)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DecodeError, match="decord: .*; pyav: "):
        decode_video(bad, 10)


def test_pyav_fallback_when_decord_missing(sample, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("no decord")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    video = next((sample.data_root / "Artemis_data/HC-STVG/videos").glob("*.mp4"))
    frames, reader = decode_video(video, 5)
    assert reader == "pyav" and frames.shape == (5, 64, 96, 3)


def test_list_sources(tmp_path):
    for name in ["b.MP4", "a.b.mkv", "c.webm", "notes.txt", ".hidden.mp4", "d.MOV"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    names = [(s.name, s.path.name) for s in list_sources(tmp_path)]
    assert names == [("a.b", "a.b.mkv"), ("b", "b.MP4"), ("c", "c.webm"), ("d", "d.MOV")]
    assert [s.name for s in list_sources(tmp_path, frames=True)] == ["folder"]
    (tmp_path / "b.avi").write_bytes(b"x")
    with pytest.raises(InputError, match="b.MP4 and b.avi -> b|b.avi and b.MP4 -> b"):
        list_sources(tmp_path)
    with pytest.raises(InputError, match="not found"):
        list_sources(tmp_path / "missing")


def test_inspect_reports_valid_and_broken(tmp_path):
    good = np.zeros((356, 8), dtype=np.float16)
    good[:30] = 1.0
    good[100:] = 0.5
    save_feature(tmp_path / "good.pkl", good)
    save_feature(tmp_path / "wide.npy", np.ones((356, 8), dtype=np.float32))
    save_feature(tmp_path / "rows.safetensors", np.ones((300, 8), dtype=np.float16))
    nan = good.copy()
    nan[0, 0] = np.nan
    save_feature(tmp_path / "nan.pkl", nan)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(print))
    infos = {p.path.rsplit("/", 1)[-1]: p for p in inspect_features([tmp_path])}
    assert infos["good.pkl"].ok and infos["good.pkl"].frames == 30 and infos["good.pkl"].patches == 256
    assert infos["good.pkl"].shape == [356, 8] and infos["good.pkl"].max == 1.0
    assert infos["wide.npy"].ok and "float16" in infos["wide.npy"].warnings[0]
    assert not infos["rows.safetensors"].ok and "square number" in infos["rows.safetensors"].problems[0]
    assert not infos["nan.pkl"].ok and infos["nan.pkl"].nonfinite == 1
    assert not infos["evil.pkl"].ok and "not allowed" in infos["evil.pkl"].problems[0]

    result = runner.invoke(app, ["features", "inspect", str(tmp_path / "good.pkl"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["frames"] == 30
    result = runner.invoke(app, ["features", "inspect", str(tmp_path)])
    assert result.exit_code == 1
    assert "3 invalid" in result.output


def test_resolve_device_gives_cuda_an_index(monkeypatch):
    import torch

    from artemis_cli.features.extract import resolve_device

    assert resolve_device("cpu", {}) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto", {}) == torch.device("cuda:0")
    assert resolve_device("cuda", {"LOCAL_RANK": "3"}) == torch.device("cuda:3")  # one GPU per torchrun rank
    assert resolve_device("cuda:1", {"LOCAL_RANK": "3"}) == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda", {})


def test_hf_backend_reads_full_clip_checkpoints_quietly(tmp_path, capfd):
    import torch
    from transformers import CLIPConfig, CLIPModel

    from artemis_cli.features.backends import load_backend
    from artemis_cli.model.tiny import tiny_clip_vision_config

    # openai/clip-vit-large-patch14 is a whole CLIPModel (text tower too), like this one.
    config = CLIPConfig(vision_config=tiny_clip_vision_config().to_dict(), projection_dim=64,
                        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 49408})
    torch.manual_seed(0)
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path)
    capfd.readouterr()
    backend = load_backend("hf", str(tmp_path), torch.device("cpu"), torch.float32)
    assert "UNEXPECTED" not in capfd.readouterr().err
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = clip.vision_model(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    torch.testing.assert_close(backend.forward(pixels), expected)
    assert (backend.patches, backend.width, backend.layers) == (256, 64, 12)
