"""The feature and track caches of the own-video path, keyed by the video's content hash.

- ``CACHE/features/<key>.pkl``: the clip feature by the published recipe (`features` library, one
  video), key = sha256 of (video content hash, CLIP model, recipe). A second question about the same
  video costs no extraction.
- ``CACHE/tracks/<key>/``: ``frames/`` (the tracked frames as JPEG) and ``track.json`` (the record
  and the track), key = sha256 of (video content hash, key frame, box, tracker, tracker model,
  stride). Entries are written to a temp folder and renamed, so a killed run leaves no half entry.

Both are safe to share between threads: concurrent requests for the same entry compute it once
(`claim`: the second waits for the first, then finds the entry), and a hit marks its entry as used
(its mtime), which is the order `CacheQuota` evicts in: least recently used first, down to a size
quota, never an entry a request still holds (`CacheQuota.pin`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from artemis_cli.errors import InputError

FEATURE_RECIPE = {"num_frames": 100, "resize": "nearest", "layer": -2, "drop_cls": True, "format": "pkl"}


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


class _Claims:
    """One lock per cache entry being computed, so concurrent requests for it compute it once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, list] = {}  # key -> [lock, holders]

    @contextlib.contextmanager
    def claim(self, key: str, check: Optional[Callable[[int], None]] = None) -> Iterator[None]:
        """Hold `key`'s lock; while another holds it, wait, calling `check(-1)` every 0.2 s (it may raise
        to stop waiting: a deadline, a shutdown)."""
        with self._lock:
            slot = self._held.setdefault(key, [threading.RLock(), 0])  # re-entrant: store() inside a claim
            slot[1] += 1
        try:
            while not slot[0].acquire(timeout=0.2):
                if check is not None:
                    check(-1)
            try:
                yield
            finally:
                slot[0].release()
        finally:
            with self._lock:
                slot[1] -= 1
                if slot[1] == 0:
                    self._held.pop(key, None)


def touch(path: Path) -> None:
    """Mark a cache entry as just used (its mtime: the order `CacheQuota` evicts in)."""
    with contextlib.suppress(OSError):
        os.utime(path)


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
        self._backend_lock = threading.Lock()
        self._claims = _Claims()

    def path(self, video_hash: str) -> Path:
        key = cache_key({"video": video_hash, "clip": model_identity(self.clip_model), "recipe": FEATURE_RECIPE})
        return self.root / f"{key}.pkl"

    def backend(self):
        with self._backend_lock:  # loaded once, whichever request needs it first
            if self._backend is None:
                from artemis_cli.features.backends import load_backend
                from artemis_cli.features.extract import resolve_device, resolve_dtype

                device = resolve_device(self.device)
                dtype = resolve_dtype(self.dtype, device)
                self._backend = (load_backend("hf", str(self.folder), device, dtype, option=self.option), device,
                                 dtype)
        return self._backend

    def get(self, video: Path, video_hash: str, *, check: Optional[Callable[[int], None]] = None,
            created: Optional[list] = None) -> tuple[Path, float]:
        """(feature file, seconds spent extracting: 0 on a hit). `check(-1)` is called between batches of
        frames (it may raise to stop the extraction: nothing is written then); a file this call writes is
        appended to `created` (so a request that fails can remove what it added)."""
        target = self.path(video_hash)
        with self._claims.claim(target.name, check):
            if target.is_file():
                # A hit: the file's shape is checked when it is loaded (model.inputs.load_video_feature).
                touch(target)
                return target, 0.0
            seconds = self._extract(video, target, check)
            if created is not None:
                created.append(target)
            return target, seconds

    def _extract(self, video: Path, target: Path, check: Optional[Callable[[int], None]]) -> float:
        from artemis_cli.features.decoding import VideoSource
        from artemis_cli.features.pipeline import Job, output_is_valid, run_loop

        backend, device, dtype = self.backend()
        if check is not None:
            backend = _CheckedBackend(backend, check)
        start = time.perf_counter()
        shape = (FEATURE_RECIPE["num_frames"] + backend.patches, backend.width)
        source = VideoSource(target.stem, Path(video), frame_folder=Path(video).is_dir())
        job = Job((source,), self.root, "pkl", FEATURE_RECIPE["num_frames"], shape, backend.preprocess.size,
                  shrink_in_worker=True, overwrite=True)
        self.root.mkdir(parents=True, exist_ok=True)
        failures: list[dict] = []
        batch = 256 if device.type == "cuda" else 32
        try:
            run_loop(job, backend, device, dtype, batch, 0, lambda status, frames: None, failures.append)
        except BaseException:  # stopped by `check` (or failed): leave nothing behind
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        if failures or not output_is_valid(target, shape):
            reason = failures[0]["reason"] if failures else "no valid feature written"
            with contextlib.suppress(OSError):
                target.unlink()
            raise InputError(f"{video}: cannot extract clip features ({reason})")
        return time.perf_counter() - start


class _CheckedBackend:
    """A feature backend whose `forward` first calls `check(-1)` (which may raise to stop the extraction)."""

    def __init__(self, backend, check: Callable[[int], None]):
        self._backend = backend
        self._check = check

    def forward(self, pixels):
        self._check(-1)
        return self._backend.forward(pixels)

    def __getattr__(self, name):
        return getattr(self._backend, name)


TRACK_VERSION = 3  # the tracking algorithm: 2 = guarded, streamed, several key boxes; 3 = CSRT without segmentation,
# the guard extrapolating from its first believed frames on (entries of earlier versions are not reused)
STRAY_TEMP_SECONDS = 3600  # a temp folder of a cache write this old, by a process that is gone, is swept


class TrackCache:
    """Tracks, one folder per (video, key boxes, tracker settings): ``track.json`` (the record, the track's
    confidences and cuts, decoding warnings) and ``frames/``, holding only the frames the RoI path reads
    (the key frame and the tracked frames `sample_roi_frames` picks): a video's other frames are never kept."""

    def __init__(self, root: Path):
        self.root = Path(root) / "tracks"
        self._claims = _Claims()
        self._sweep()

    def claim(self, key: str, check: Optional[Callable[[int], None]] = None):
        """A context in which this thread alone computes entry `key` (see `_Claims.claim`)."""
        return self._claims.claim(key, check)

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
            loaded = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        touch(self.folder(key))
        return loaded

    def store(self, key: str, frames, num_frames: int, entry: dict) -> Path:
        """Write `frames` ((number, RGB) pairs) + ``track.json`` into a temp folder, then rename it into place."""
        from artemis_cli.common.atomic import atomic_write_json
        from artemis_cli.ownvideo.record import write_frames

        folder = self.folder(key)
        tmp = self.root / f".{key}.tmp-{os.getpid()}-{threading.get_ident()}"  # threads of one process apart
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write_frames(tmp / "frames", frames, num_frames)
            atomic_write_json(tmp / "track.json", entry)
            with self.claim(key):  # one thread at a time swaps an entry into place
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
                pid = int(name.rsplit(".tmp-", 1)[1].split("-")[0])
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


CACHE_AREAS = ("uploads", "tracks", "features")  # what `CacheQuota` counts and evicts under a cache folder


class CacheQuota:
    """Keeps the entries under a cache folder (``uploads/`` files, ``tracks/`` folders, ``features/``
    files) within `max_bytes`: `enforce` removes the least recently used (oldest mtime, or last `used`;
    cache hits `touch` their entry) until the rest fits. An entry a request still needs is `pin`ned and never removed;
    temp files and folders (names starting with ``.``) are neither counted nor removed."""

    def __init__(self, root: Path, max_bytes: int, areas: tuple[str, ...] = CACHE_AREAS):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.areas = areas
        self._lock = threading.Lock()
        self._pins: dict[str, int] = {}
        self._used: dict[str, float] = {}  # entries used by this process, whose mtime must not change
        self.evicted = 0  # entries removed so far

    def used(self, path: Path) -> None:
        """Note that an entry was just used, without changing its mtime (an upload's mtime is part of the
        keys its video is known by)."""
        path = Path(path)
        if path.parent not in {self.root / area for area in self.areas}:
            return  # not an entry (a video read in place): nothing to evict, so nothing to remember
        with self._lock:
            self._used[str(path)] = time.time()

    def pin(self, *paths: Path) -> None:
        """Keep these entries (files or track folders) until as many `unpin`s."""
        with self._lock:
            for path in paths:
                key = str(Path(path))
                self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, *paths: Path) -> None:
        with self._lock:
            for path in paths:
                key = str(Path(path))
                left = self._pins.get(key, 0) - 1
                if left > 0:
                    self._pins[key] = left
                else:
                    self._pins.pop(key, None)

    def pinned(self, path: Path) -> bool:
        with self._lock:
            return str(Path(path)) in self._pins

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last used, bytes, path) of every entry, oldest first."""
        found = []
        for area in self.areas:
            folder = self.root / area
            try:
                listing = list(os.scandir(folder))
            except OSError:
                continue
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                    size = _tree_bytes(Path(entry.path)) if entry.is_dir(follow_symlinks=False) else info.st_size
                except OSError:
                    continue
                found.append((max(info.st_mtime, self._used.get(entry.path, 0.0)), size, Path(entry.path)))
        return sorted(found, key=lambda item: item[0])

    def usage(self) -> int:
        """Bytes the entries take now."""
        return sum(size for _, size, _ in self.entries())

    def enforce(self) -> list[Path]:
        """Remove least recently used, unpinned entries until the rest fits in `max_bytes`; returns them."""
        removed: list[Path] = []
        entries = self.entries()  # the walk runs unlocked: pins and unpins of other requests do not wait for it
        total = sum(size for _, size, _ in entries)
        with self._lock:  # pins wait while entries go, so a pinned entry is never half removed
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                if str(path) in self._pins:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
                if not path.exists():
                    total -= size
                    removed.append(path)
                    self._used.pop(str(path), None)
            self.evicted += len(removed)
        return removed


def _tree_bytes(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(base, name), follow_symlinks=False).st_size
    return total
