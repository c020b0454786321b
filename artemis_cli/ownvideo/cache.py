"""The feature and track caches of the own-video path, keyed by the video's content hash.

- ``CACHE/features/<key>.pkl``: the clip feature by the published recipe (`features` library, one
  video), key = sha256 of (video content hash, CLIP model, recipe). A second question about the same
  video costs no extraction.
- ``CACHE/tracks/<key>/``: ``frames/`` (the tracked frames as JPEG) and ``track.json`` (the record
  and the track), key = sha256 of (video content hash, key frame, box, tracker, tracker model,
  stride). Entries are written to a temp folder and renamed, so a killed run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from artemis_cli.errors import InputError

FEATURE_RECIPE = {"num_frames": 100, "resize": "nearest", "layer": -2, "drop_cls": True, "format": "pkl"}


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def model_identity(model: str) -> str:
    """A local folder by its absolute path, a hub id as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


class FeatureCache:
    """Clip features of whole videos, extracted with `features` (`load_backend` + `run_loop`) on a miss."""

    def __init__(self, root: Path, clip_model: str, device: str = "auto", dtype: str = "auto",
                 option: str = "--clip-model"):
        """`option` is the flag that named `clip_model`: a model that is missing (not a folder, not in the
        HF cache, hub unreachable) is an error naming it here, before any tracking."""
        from artemis_cli.common.hub import resolve_model_folder

        self.root = Path(root) / "features"
        self.clip_model = clip_model
        self.option = option
        self.folder = resolve_model_folder(clip_model, option=option)
        self.device = device
        self.dtype = dtype
        self._backend = None

    def path(self, video_hash: str) -> Path:
        key = cache_key({"video": video_hash, "clip": model_identity(self.clip_model), "recipe": FEATURE_RECIPE})
        return self.root / f"{key}.pkl"

    def backend(self):
        if self._backend is None:
            from artemis_cli.features.backends import load_backend
            from artemis_cli.features.extract import resolve_device, resolve_dtype

            device = resolve_device(self.device)
            dtype = resolve_dtype(self.dtype, device)
            self._backend = (load_backend("hf", str(self.folder), device, dtype, option=self.option), device, dtype)
        return self._backend

    def get(self, video: Path, video_hash: str) -> tuple[Path, float]:
        """(feature file, seconds spent extracting: 0 on a hit)."""
        from artemis_cli.features.decoding import VideoSource
        from artemis_cli.features.pipeline import Job, output_is_valid, run_loop

        target = self.path(video_hash)
        if target.is_file():
            # A hit: the file's shape is checked when it is loaded (model.inputs.load_video_feature).
            return target, 0.0
        backend, device, dtype = self.backend()
        start = time.perf_counter()
        shape = (FEATURE_RECIPE["num_frames"] + backend.patches, backend.width)
        source = VideoSource(target.stem, Path(video), frame_folder=Path(video).is_dir())
        job = Job((source,), self.root, "pkl", FEATURE_RECIPE["num_frames"], shape, backend.preprocess.size,
                  shrink_in_worker=True, overwrite=True)
        self.root.mkdir(parents=True, exist_ok=True)
        failures: list[dict] = []
        batch = 256 if device.type == "cuda" else 32
        run_loop(job, backend, device, dtype, batch, 0, lambda status, frames: None,
                 failures.append)
        if failures or not output_is_valid(target, shape):
            reason = failures[0]["reason"] if failures else "no valid feature written"
            raise InputError(f"{video}: cannot extract clip features ({reason})")
        return target, time.perf_counter() - start


TRACK_VERSION = 2  # the tracking algorithm: 2 = guarded, streamed, several key boxes (entries of 1 are not reused)
STRAY_TEMP_SECONDS = 3600  # a temp folder of a cache write this old, by a process that is gone, is swept


class TrackCache:
    """Tracks, one folder per (video, key boxes, tracker settings): ``track.json`` (the record, the track's
    confidences and cuts, decoding warnings) and ``frames/``, holding only the frames the RoI path reads
    (the key frame and the tracked frames `sample_roi_frames` picks): a video's other frames are never kept."""

    def __init__(self, root: Path):
        self.root = Path(root) / "tracks"
        self._sweep()

    def key(self, video_hash: str, keys, tracker: str, tracker_model: Optional[str], stride: int) -> str:
        return cache_key({"video": video_hash, "keys": [[k.frame, [round(float(v), 2) for v in k.box]] for k in keys],
                          "tracker": tracker, "tracker_model": model_identity(tracker_model) if tracker_model else None,
                          "stride": stride, "version": TRACK_VERSION})

    def folder(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> Optional[dict]:
        entry = self.folder(key) / "track.json"
        if not entry.is_file():
            return None
        try:
            return json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def store(self, key: str, frames, num_frames: int, entry: dict) -> Path:
        """Write `frames` ((number, RGB) pairs) + ``track.json`` into a temp folder, then rename it into place."""
        from artemis_cli.common.atomic import atomic_write_json
        from artemis_cli.ownvideo.record import write_frames

        folder = self.folder(key)
        tmp = self.root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write_frames(tmp / "frames", frames, num_frames)
            atomic_write_json(tmp / "track.json", entry)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _sweep(self) -> list[Path]:
        """Remove temp folders of cache writes that were killed: their process is gone and they are old."""
        removed = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        for entry in os.scandir(self.root):
            name = entry.name
            if not (name.startswith(".") and ".tmp-" in name and entry.is_dir(follow_symlinks=False)):
                continue
            try:
                pid = int(name.rsplit(".tmp-", 1)[1])
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except (ValueError, OSError):
                continue
            if age > STRAY_TEMP_SECONDS and not _alive(pid):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
