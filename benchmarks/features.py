"""Feature extraction speed: the published loop vs `artemis features extract`, same videos, same run.

The published loop (`utils/save_spatio_temporal_clip_features_video.py` in qiujihao19/Artemis) is
reproduced step for step below: serial decord decode, nearest resize on the CPU, PIL images through
`CLIPImageProcessor`, the tower in batches of 32 with all hidden states, numpy pooling, pickles. Two
changes only: the device and dtype are parameters (it hard-codes `.cuda()` and float16), and it does
not swallow exceptions (a failing video would make the comparison meaningless).

Both legs read the same generated mp4 files with the same random-initialised CLIP vision tower saved
to disk (no downloads). Times exclude model loading (reported separately as end-to-end). Features are
compared per video by cosine similarity.

    python benchmarks/features.py --device cpu --model small                 # CPU, small tower
    python benchmarks/features.py --device cuda --model vit-l14 --workers 12  # GPU, real ViT-L/14 shape
    python benchmarks/features.py --workdir W --leg ours                      # one leg, for whole-process timing
    python benchmarks/features.py --workdir W --leg decode --workers 15       # our decode workers alone (no tower)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {  # hidden, layers, heads, MLP width; all 224 px, patch 14 (256 patches)
    "small": (64, 4, 4, 128),  # cheap tower: the run time is mostly decoding and preprocessing
    "tiny": (64, 12, 4, 128),  # the tests' tiny CLIP: on 2 CPU cores the tower dominates
    "vit-l14": (1024, 24, 16, 4096),  # CLIP ViT-L/14, the published tower's shape
}


# --- the published loop, step for step ---------------------------------------------------------

def published_get_seq_frames(total_num_frames, desired_num_frames):
    seg_size = float(total_num_frames - 1) / desired_num_frames
    seq = []
    for i in range(desired_num_frames):
        start = int(np.round(seg_size * i))
        end = int(np.round(seg_size * (i + 1)))
        seq.append((start + end) // 2)
    return seq


def published_load_video(vis_path, num_frm=100):
    import torch
    from decord import VideoReader, cpu
    from PIL import Image

    vr = VideoReader(vis_path, ctx=cpu(0))
    total_frame_num = len(vr)
    total_num_frm = min(total_frame_num, num_frm)
    frame_idx = published_get_seq_frames(total_frame_num, total_num_frm)
    img_array = vr.get_batch(frame_idx).asnumpy()
    h, w = 224, 224
    if img_array.shape[-3] != h or img_array.shape[-2] != w:
        img_array = torch.from_numpy(img_array).permute(0, 3, 1, 2).float()
        img_array = torch.nn.functional.interpolate(img_array, size=(h, w))
        img_array = img_array.permute(0, 2, 3, 1).to(torch.uint8).numpy()
    img_array = img_array.reshape((1, total_num_frm, img_array.shape[-3], img_array.shape[-2], img_array.shape[-1]))
    return [Image.fromarray(img_array[0, j]) for j in range(total_num_frm)]


def published_spatio_temporal(features, num_temporal_tokens=100):
    t, s, c = features.shape
    temporal_tokens = np.mean(features, axis=1)
    padding_size = num_temporal_tokens - t
    if padding_size > 0:
        temporal_tokens = np.pad(temporal_tokens, ((0, padding_size), (0, 0)), mode="constant")
    spatial_tokens = np.mean(features, axis=0)
    return np.concatenate([temporal_tokens, spatial_tokens], axis=0)


def published_main(video_dir_path, clip_feat_path, vision_tower_path, device, dtype, infer_batch=32):
    """Returns (seconds for the video loop, seconds including model load)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModel

    started = time.perf_counter()
    os.makedirs(clip_feat_path, exist_ok=True)
    image_processor = CLIPImageProcessor.from_pretrained(vision_tower_path)
    vision_tower = CLIPVisionModel.from_pretrained(vision_tower_path, dtype=dtype).to(device)
    vision_tower.eval()
    width = vision_tower.config.hidden_size
    all_videos = os.listdir(video_dir_path)
    video_type = [".mp4", ".mkv", "webm", ".avi"]
    all_videos = [i for i in all_videos if i[-4:] in video_type]
    _sync(device)
    loop_start = time.perf_counter()
    video_clip_features = {}
    counter = 0
    for video_name in all_videos:
        video_path = f"{video_dir_path}/{video_name}"
        video_id = video_name.split(".")[0]
        if os.path.exists(f"{clip_feat_path}/{video_id}.pkl"):
            continue
        video = published_load_video(video_path)
        video_tensor = image_processor.preprocess(video, return_tensors="pt")["pixel_values"]
        video_tensor = video_tensor.to(dtype)
        n_chunk = len(video_tensor)
        video_features = torch.FloatTensor(n_chunk, 256, width).fill_(0)
        n_iter = int(math.ceil(n_chunk / float(infer_batch)))
        for i in range(n_iter):
            min_ind = i * infer_batch
            max_ind = (i + 1) * infer_batch
            video_batch = video_tensor[min_ind:max_ind].to(device)
            with torch.no_grad():  # the published script ran without it; only memory differs
                image_forward_outs = vision_tower(video_batch, output_hidden_states=True)
            select_hidden_state = image_forward_outs.hidden_states[-2]
            batch_features = select_hidden_state[:, 1:]
            video_features[min_ind:max_ind] = batch_features.detach().cpu()
        video_clip_features[video_id] = published_spatio_temporal(video_features.numpy().astype("float16"))
        counter += 1
        if counter % 512 == 0:
            for key in video_clip_features.keys():
                with open(f"{clip_feat_path}/{key}.pkl", "wb") as f:
                    pickle.dump(video_clip_features[key], f)
            video_clip_features = {}
    for key in video_clip_features.keys():
        with open(f"{clip_feat_path}/{key}.pkl", "wb") as f:
            pickle.dump(video_clip_features[key], f)
    end = time.perf_counter()
    return end - loop_start, end - started


# --- setup and our leg --------------------------------------------------------------------------

def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def panning_frames(rng: np.random.Generator, frames: int, width: int, height: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8: a detailed random texture panning diagonally (cheap to make at any size)."""
    coarse = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    texture = (texture // 2 + rng.integers(0, 128, size=texture.shape, dtype=np.uint8)).astype(np.uint8)
    return np.stack([np.roll(texture, (t, 3 * t), axis=(0, 1)) for t in range(frames)])


def make_videos(folder: Path, count: int, distinct: int, frames: int, width: int, height: int, codec: str) -> None:
    """`distinct` generated mp4 files copied to `count` names (decoding work is per file all the same)."""
    from artemis_cli.data.synthetic_video import encode_mp4

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = []
    for index in range(count):
        path = folder / f"video_{index:04d}.mp4"
        if index < distinct:
            fallback = "mpeg4" if codec == "h264" else "h264"  # a PyAV build without the asked encoder
            path.write_bytes(encode_mp4(panning_frames(rng, frames, width, height), fps=30, codecs=(codec, fallback)))
            made.append(path)
        else:
            shutil.copyfile(made[index % distinct], path)


def video_codec(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name


def warm_up(model_dir: Path, device: str, dtype) -> None:
    """One throwaway forward, so neither leg pays for CUDA/cuBLAS start-up inside its timing."""
    import torch
    from transformers import CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    with torch.no_grad():
        model(torch.zeros(32, 3, 224, 224, dtype=dtype, device=device), output_hidden_states=True)
    _sync(device)
    del model


def make_model(folder: Path, preset: str, device: str, dtype) -> None:
    import torch
    from transformers import CLIPVisionModel

    from artemis_cli.model.tiny import clip_image_processor, tiny_clip_vision_config

    hidden, layers, heads, mlp = MODELS[preset]
    config = tiny_clip_vision_config(hidden, layers)
    config.num_attention_heads, config.intermediate_size = heads, mlp
    torch.manual_seed(0)
    with torch.device(device):  # initialising a ViT-L on the GPU takes a second, on the CPU far longer
        model = CLIPVisionModel(config)
    model.to(dtype).save_pretrained(folder)
    clip_image_processor().save_pretrained(folder)


def ours(video_dir: Path, out: Path, model_dir: Path, device: str, batch_size, workers):
    from artemis_cli.features.extract import ExtractConfig, extract_features

    started = time.perf_counter()
    summary = extract_features(ExtractConfig(input=video_dir, output=out, model=str(model_dir), device=device,
                                             batch_size=batch_size, workers=workers), show_progress=False)
    assert summary.failed == 0 and summary.written > 0, summary.failures
    return summary.seconds, time.perf_counter() - started


def decode_only(video_dir: Path, out: Path, device: str, workers) -> tuple[float, float]:
    """Our DataLoader of decode workers with no tower: the most videos/s the tower could be fed."""
    import torch
    from torch.utils.data import DataLoader

    from artemis_cli.features.decoding import list_sources
    from artemis_cli.features.extract import default_workers
    from artemis_cli.features.pipeline import Job, VideoDataset, _worker_init

    started = time.perf_counter()
    workers = default_workers(torch.device(device)) if workers is None else workers
    job = Job(tuple(list_sources(video_dir)), out, "pkl", 100, (356, 1), 224, shrink_in_worker=True, overwrite=True)
    loader = DataLoader(VideoDataset(job), batch_size=None, num_workers=workers, pin_memory=device.startswith("cuda"),
                        worker_init_fn=_worker_init if workers else None, prefetch_factor=4 if workers else None)
    frames = sum(item["frames"].shape[0] for item in loader if item["status"] == "ok")
    assert frames > 0
    seconds = time.perf_counter() - started
    return seconds, seconds


def min_cosine(a_dir: Path, b_dir: Path) -> tuple[float, float, int]:
    from artemis_cli.data.feature_files import load_feature

    cosines, diffs = [], []
    for path in sorted(a_dir.glob("*.pkl")):
        a = load_feature(path).astype(np.float64).ravel()
        b = load_feature(b_dir / path.name).astype(np.float64).ravel()
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        diffs.append(float(np.abs(a - b).max()))
    return min(cosines), max(diffs), len(cosines)


def prepare(work: Path, args, videos: int, dtype) -> None:
    """Generate the videos and save the random tower into `work`, unless a matching set is there."""
    key = json.dumps([args.model, videos, args.distinct, args.frames, args.size, args.codec, str(dtype)])
    marker = work / "prepared.json"
    if marker.exists() and marker.read_text() == key:
        return
    shutil.rmtree(work / "videos", ignore_errors=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    width, height = (int(v) for v in args.size.split("x"))
    make_videos(work / "videos", videos, args.distinct, args.frames, width, height, args.codec)
    make_model(work / "model", args.model, args.device, dtype)
    marker.write_text(key)


def run_leg(leg: str, work: Path, out: Path, args, dtype) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    if leg == "published":
        return published_main(str(work / "videos"), str(out), str(work / "model"), args.device, dtype)
    if leg == "decode":
        return decode_only(work / "videos", out, args.device, args.workers)
    return ours(work / "videos", out, work / "model", args.device, args.batch_size, args.workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default="small", choices=sorted(MODELS))
    parser.add_argument("--videos", type=int, default=None, help="default 16 on CPU, 48 on CUDA")
    parser.add_argument("--distinct", type=int, default=2, help="distinct generated videos (copied to --videos names)")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (default 150 on CPU, 300 on CUDA)")
    parser.add_argument("--size", default=None, help="video WxH (default 320x240 on CPU, 640x360 on CUDA)")
    parser.add_argument("--codec", default="h264", choices=("h264", "mpeg4"))
    parser.add_argument("--batch-size", type=int, default=None, help="our frames per batch (default: ours)")
    parser.add_argument("--workers", type=int, default=None, help="our decode workers (default: ours)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each leg, alternating; medians reported")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep videos and model here between calls (default: a temp dir, removed)")
    parser.add_argument("--leg", default="both", choices=("both", "published", "ours", "decode"),
                        help="run one leg only (for whole-process timing of each side; `decode`: our decode "
                             "workers with no tower); needs --workdir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    cuda = args.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    videos = args.videos or (48 if cuda else 16)
    args.frames = args.frames or (300 if cuda else 150)
    args.size = args.size or ("640x360" if cuda else "320x240")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="artemis_features_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        setup = time.perf_counter()
        prepare(work, args, videos, dtype)
        warm_up(work / "model", args.device, dtype)
        setup = time.perf_counter() - setup
        if args.leg != "both":
            loop, total = run_leg(args.leg, work, work / f"out_{args.leg}", args, dtype)
            print(json.dumps({"leg": args.leg, "videos": videos, "workers": args.workers, "loop_s": round(loop, 3),
                              "total_s": round(total, 3), "videos_per_s": round(videos / loop, 2)}))
            return
        runs = {"published": [], "ours": []}
        for repeat in range(args.repeats):
            for leg in runs:
                runs[leg].append(run_leg(leg, work, work / f"{leg}_{repeat}", args, dtype))
        cosine, max_diff, compared = min_cosine(work / "published_0", work / "ours_0")
        codec = video_codec(work / "videos" / "video_0000.mp4")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    loop = {leg: statistics.median(t[0] for t in times) for leg, times in runs.items()}
    total = {leg: statistics.median(t[1] for t in times) for leg, times in runs.items()}
    result = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)",
        "model": args.model, "dtype": str(dtype).replace("torch.", ""), "videos": videos,
        "frames_per_video": args.frames, "size": args.size, "codec": codec, "repeats": args.repeats, "setup_s": round(setup, 1),
        "published_s": round(loop["published"], 2), "ours_s": round(loop["ours"], 2),
        "published_videos_per_s": round(videos / loop["published"], 2), "ours_videos_per_s": round(videos / loop["ours"], 2),
        "speedup": round(loop["published"] / loop["ours"], 2),
        "speedup_end_to_end": round(total["published"] / total["ours"], 2),
        "min_cosine": round(cosine, 6), "max_abs_diff": round(max_diff, 4), "compared": compared,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
