"""The extraction loop: DataLoader workers decode while the tower runs on batches that span videos.

Workers (a DataLoader over videos) check for an existing valid output, decode the sampled frames and,
when that shrinks them, apply the nearest-neighbour squash (pure indexing, bit-identical to doing it
on the device, and it cuts host-to-device traffic). The main process moves frames to the device,
normalises them there, fills fixed-size batches across video boundaries, pools each video as soon as
its last frame is through, and hands the result to a writer thread that saves it atomically.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from artemis_cli.data.feature_files import load_feature, save_feature
from artemis_cli.errors import InputError
from artemis_cli.features.decoding import DecodeError, VideoSource, read_sampled_frames
from artemis_cli.features.recipe import VideoPooler, resize_nearest_numpy

if TYPE_CHECKING:
    import torch

    from artemis_cli.features.backends import Backend


@dataclass(frozen=True)
class Job:
    """What every worker needs to know; plain data so it pickles into worker processes."""

    sources: tuple[VideoSource, ...]
    output: Path
    fmt: str
    num_frames: int
    expected_shape: tuple[int, int]
    size: int
    shrink_in_worker: bool  # nearest mode: squash large frames in the worker
    overwrite: bool

    def out_path(self, source: VideoSource) -> Path:
        return self.output / f"{source.name}.{self.fmt}"


def output_is_valid(path: Path, shape: tuple[int, int]) -> bool:
    """An existing feature file counts as done when it loads, has `shape`, is float16 and finite."""
    if not path.is_file():
        return False
    try:
        array = load_feature(path)
    except InputError:
        return False
    return array.shape == shape and array.dtype == np.float16 and bool(np.isfinite(array).all())


class VideoDataset:
    """Map-style dataset over videos; item ``i`` is a dict with ``status`` ok / skipped / failed."""

    def __init__(self, job: Job):
        self.job = job

    def __len__(self) -> int:
        return len(self.job.sources)

    def __getitem__(self, index: int) -> dict:
        import torch

        job = self.job
        source = job.sources[index]
        if not job.overwrite and output_is_valid(job.out_path(source), job.expected_shape):
            return {"index": index, "status": "skipped"}
        def shrink(frames):  # [t, H, W, 3] -> [t, S, S, 3], a few frames at a time as they are decoded
            if frames.shape[1] * frames.shape[2] > job.size * job.size:
                return resize_nearest_numpy(frames, job.size)
            return frames

        try:
            frames, reader = read_sampled_frames(source, job.num_frames, shrink if job.shrink_in_worker else None)
        except DecodeError as exc:
            return {"index": index, "status": "failed", "reason": str(exc)}
        return {"index": index, "status": "ok", "reader": reader,
                "frames": torch.from_numpy(np.ascontiguousarray(frames))}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)


@dataclass
class _Pending:
    source: VideoSource
    pooler: VideoPooler
    pixels: "torch.Tensor"  # [T, 3, S, S] frames not yet run
    offset: int = 0


@dataclass
class LoopStats:
    written: int = 0
    skipped: int = 0
    frames: int = 0
    readers: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Writer:
    """Saves pooled features on a background thread; GPU results are copied without a sync first."""

    def __init__(self, job: Job, device: "torch.device"):
        self.job = job
        self.device = device
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-writer")
        self.futures: collections.deque = collections.deque()

    def submit(self, source: VideoSource, features: "torch.Tensor") -> None:
        import torch

        event = None
        if features.device.type == "cuda":
            host = features.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = features
        self.futures.append(self.pool.submit(self._save, self.job.out_path(source), host, event))
        while self.futures and self.futures[0].done():
            self.futures.popleft().result()  # re-raises a write error here

    def _save(self, path: Path, host: "torch.Tensor", event) -> None:
        if event is not None:
            event.synchronize()
        save_feature(path, host.numpy(), self.job.fmt)

    def close(self) -> None:
        try:
            while self.futures:
                self.futures.popleft().result()
        finally:
            self.pool.shutdown(wait=True)


def run_loop(job: Job, backend: "Backend", device: "torch.device", dtype: "torch.dtype", batch_size: int,
             workers: int, on_video: Callable[[str, int], None], on_failure: Callable[[dict], None]) -> LoopStats:
    """Extract every source of `job`; `on_video(status, frames)` is called as each video finishes.

    Batches always hold exactly `batch_size` frames (the last is zero-padded), so a frame's features
    never depend on which other videos share its batch: a resumed run writes the same bits.
    """
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(VideoDataset(job), batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=4 if workers else None)
    stats = LoopStats()
    queue: collections.deque[_Pending] = collections.deque()
    queued = 0
    writer = _Writer(job, device)
    patches, width = job.expected_shape[0] - job.num_frames, job.expected_shape[1]
    start = time.perf_counter()

    def run_batch() -> None:
        nonlocal queued
        parts, owners = [], []
        taken = 0
        while queue and taken < batch_size:
            pending = queue[0]
            count = min(batch_size - taken, pending.pixels.shape[0] - pending.offset)
            parts.append(pending.pixels[pending.offset:pending.offset + count])
            owners.append((pending, count))
            pending.offset += count
            taken += count
            if pending.offset == pending.pixels.shape[0]:
                queue.popleft()
        queued -= taken
        if taken < batch_size:
            parts.append(parts[0].new_zeros((batch_size - taken, *parts[0].shape[1:])))
        features = backend.forward(torch.cat(parts))  # [batch, P, C]
        row = 0
        for pending, count in owners:
            pending.pooler.add(features[row:row + count])
            row += count
            if pending.pooler.complete:
                writer.submit(pending.source, pending.pooler.result())  # [N + P, C] float16
                stats.written += 1
                stats.frames += pending.pooler.frames
                on_video("written", pending.pooler.frames)

    threads = torch.get_num_threads()
    if device.type == "cpu" and workers:
        # Decode workers and the tower's intra-op threads share the cores: oversubscribed OpenMP
        # threads spin-wait for each other, and small matmuls then run many times slower.
        torch.set_num_threads(max(1, available_cpus() - workers))
    try:
        for item in loader:
            source = job.sources[item["index"]]
            if item["status"] == "skipped":
                stats.skipped += 1
                on_video("skipped", 0)
                continue
            if item["status"] == "failed":
                on_failure({"name": source.name, "path": str(source.path), "reason": item["reason"]})
                on_video("failed", 0)
                continue
            stats.readers[item["reader"]] = stats.readers.get(item["reader"], 0) + 1
            frames = item["frames"].to(device, non_blocking=True)  # [T, H, W, 3] uint8
            pixels = backend.preprocess.to_pixels(frames, dtype)  # [T, 3, S, S]
            pooler = VideoPooler(pixels.shape[0], job.num_frames, patches, width, device)
            queue.append(_Pending(source, pooler, pixels))
            queued += pixels.shape[0]
            while queued >= batch_size:
                run_batch()
        while queued:
            run_batch()
    finally:
        torch.set_num_threads(threads)
        writer.close()
    stats.seconds = time.perf_counter() - start
    return stats
