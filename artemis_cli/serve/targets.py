"""From a chat request to what `Referrer.ask_many` takes: the conversation, the video, the target.

The video comes as a ``file://`` URL (only under an ``--allow-path`` folder) or a ``data:video/...``
URL (written once, by content hash, to the server's upload folder, so the track and feature caches
find it again). A prepared referring record (as `infer videorefbench` reads) becomes a
`PreparedTarget` directly: no tracking, no feature extraction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlparse

from artemis_cli.errors import InputError, UsageError
from artemis_cli.ownvideo.referrer import PreparedTarget, Target, check_question
from artemis_cli.serve.schemas import ChatRequest

VIDEO_TYPES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-msvideo": ".avi",
               "video/x-matroska": ".mkv", "video/avi": ".avi"}
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(;[\w.+-]+=[\w.+-]+)*);base64,(?P<data>.*)", re.S)


class Forbidden(UsageError):
    """A path outside the folders the server was allowed to read (HTTP 403)."""


@dataclass
class Conversation:
    """The request's question, its earlier (question, answer) turns and where the video is."""

    question: str
    history: list[tuple[str, str]]
    video_url: Optional[str]


def read_conversation(chat: ChatRequest) -> Conversation:
    """Check the messages: user/assistant turns starting and ending with the user, the video (a
    `video_url` part) in the first user turn only, the question with its ``<bbox>`` (follow-ups without)."""
    if any(m.role == "system" for m in chat.messages):
        raise UsageError("messages: system messages are not supported (Artemis answers in its own template, "
                         "with its fixed system prompt)")
    roles = [m.role for m in chat.messages]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if roles != expected or roles[-1] != "user":
        raise UsageError(f"messages: expected alternating user/assistant turns starting and ending with user, got "
                         f"{', '.join(roles)}")
    videos = [(i, url) for i, m in enumerate(chat.messages) for url in m.videos()]
    if len(videos) > 1 or any(i != 0 for i, _ in videos):
        raise UsageError("messages: one video_url part, in the first user message")
    if chat.record is None and not videos:
        raise UsageError("messages: the video is missing: add a {'type': 'video_url', 'video_url': {'url': "
                         "'file://...' or 'data:video/mp4;base64,...'}} part to the first user message "
                         "(or pass a prepared 'record')")
    if chat.record is not None and videos:
        raise UsageError("messages: a request with a prepared 'record' takes no video_url part")
    texts = [m.text().strip() for m in chat.messages]
    history = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    question = texts[-1]
    if not question:
        raise UsageError("messages: the last user message has no text (the question)")
    check_question(question, history)
    return Conversation(question=question, history=history, video_url=videos[0][1] if videos else None)


def _allowed(path: Path, allow: Sequence[Path], what: str) -> Path:
    resolved = path.resolve()
    if not allow:
        raise Forbidden(f"{what}: the server reads no local paths (start it with --allow-path DIR)")
    if not any(resolved == root or root in resolved.parents for root in allow):
        raise Forbidden(f"{what}: {path} is outside the folders the server may read (--allow-path)")
    return resolved


def video_path(url: str, *, allow: Sequence[Path], upload_dir: Path) -> Path:
    """The local video (file or frame folder) of a ``file://`` or ``data:`` URL."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise UsageError("video_url: a data URL must be data:video/<type>;base64,<data>")
        mime = match["mime"].lower()
        if mime not in VIDEO_TYPES:
            raise UsageError(f"video_url: unsupported type {mime} (expected {', '.join(sorted(VIDEO_TYPES))})")
        try:
            data = base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("video_url: the data URL is not valid base64") from None
        if not data:
            raise UsageError("video_url: the data URL holds no bytes")
        from artemis_cli.common.atomic import atomic_write_bytes

        path = upload_dir / f"{hashlib.sha256(data).hexdigest()}{VIDEO_TYPES[mime]}"
        if not path.is_file():
            atomic_write_bytes(path, data)
        return path
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise UsageError(f"video_url: {parsed.scheme or 'a plain path'} URLs are not read (the server fetches "
                         "nothing): use file:///path (under --allow-path) or data:video/mp4;base64,...")
    if parsed.netloc not in ("", "localhost"):
        raise UsageError(f"video_url: file URL with host {parsed.netloc!r}: expected file:///absolute/path")
    path = Path(unquote(parsed.path))
    resolved = _allowed(path, allow, "video_url")
    if not resolved.exists():
        raise UsageError(f"video_url: {path}: no such video file or frame folder")
    return resolved


def video_target(chat: ChatRequest, conversation: Conversation, *, allow: Sequence[Path], upload_dir: Path) -> Target:
    path = video_path(conversation.video_url or "", allow=allow, upload_dir=upload_dir)
    return Target(video=path, box=tuple(float(v) for v in chat.box), frame=chat.frame,
                  more=tuple(key.pair() for key in chat.keys))


class RecordTarget(PreparedTarget):
    """A `PreparedTarget` read from a referring record: its frames are the record's frame_id list, so a
    frame's number is its position there (a key frame outside the list counts as -1)."""

    def frame_number(self, frame_id) -> int:
        ids = self.record["frame_id"]
        return ids.index(frame_id) if frame_id in ids else -1


def record_target(raw: dict, data_root: str, *, allow: Sequence[Path]) -> RecordTarget:
    """A prepared referring record (VideoRef format; clip_path / frame_path relative to `data_root`) as a
    `PreparedTarget`; a malformed record or a missing file is a `UsageError` naming the field."""
    from pydantic import ValidationError

    from artemis_cli.data.records import ReferringRecord, referring_rules

    try:
        record = ReferringRecord.model_validate(raw)
    except ValidationError as exc:
        problems = [f"record.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise UsageError("; ".join(problems)) from None
    rules = referring_rules(record)
    if rules:
        raise UsageError("; ".join(f"record.{field}: {message}" for field, message in rules))
    root = _allowed(Path(data_root), allow, "data_root")
    if not root.is_dir():
        raise UsageError(f"data_root: {data_root}: not a folder")
    clip, frames = root / record.clip_path, root / record.frame_path
    if not clip.is_file():
        raise UsageError(f"record.clip_path: {record.clip_path}: no such feature file under data_root")
    if not frames.is_dir():
        raise UsageError(f"record.frame_path: {record.frame_path}: no such frame folder under data_root")
    size = _frame_size(frames, record.frame_id)
    tracked = [i for i, box in enumerate(record.track_list) if box]
    key = record.frame_id.index(record.key_frame_id) if record.key_frame_id in record.frame_id else tracked[0]
    box = record.key_frame_box if record.key_frame_box else record.track_list[tracked[0]]
    data = record.model_dump(exclude_none=True)
    return RecordTarget(target=Target(video=frames, box=tuple(float(v) for v in box), frame=key), record=data,
                        root=root, frame_size=size, num_frames=len(record.frame_id),
                        timings={"decode": 0.0, "track": 0.0, "features": 0.0},
                        frame_indices=list(range(len(record.frame_id))))


def _frame_size(frames: Path, frame_ids: list) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    first = frames / str(frame_ids[0])
    try:
        with Image.open(first) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"record.frame_id[0]: {first.name}: cannot read the frame ({type(exc).__name__})") from None


class PreparedTargets:
    """An in-memory memo in front of `Referrer.prepare`, keyed by the video's path, size and mtime and the
    target. `Referrer.prepare` takes the model's lock (tracking and feature extraction share the
    device with generation), so even a cache hit waits for the batch being generated; a memo hit
    does not, and the next batch then gathers every request that arrived meanwhile. Videos seen before
    also get their box and frame checked at once (a bad box is a 400 without waiting for the model)."""

    def __init__(self, capacity: int = 4096):
        import threading
        from collections import OrderedDict

        self.capacity = capacity
        self._prepared: "OrderedDict[tuple, PreparedTarget]" = OrderedDict()
        self._videos: "OrderedDict[tuple, tuple[tuple[int, int], int]]" = OrderedDict()  # frame size, frames
        self._lock = threading.Lock()

    @staticmethod
    def _video_key(video: Path) -> Optional[tuple]:
        try:
            stat = video.stat()
        except OSError:
            return None
        return (str(video), stat.st_mtime_ns, stat.st_size)

    def lookup(self, target: Target) -> Optional[PreparedTarget]:
        """The memoised preparation of `target`, or None; a box outside a known video's frame (or a frame
        past its end) is a `UsageError` here."""
        from artemis_cli.ownvideo.video import check_box

        video = self._video_key(Path(target.video))
        if video is None or Path(target.video).is_dir():  # frame folders: their files change, not the folder
            return None
        with self._lock:
            known = self._videos.get(video)
            prepared = self._prepared.get((video, target.box, target.frame))
            if prepared is not None:
                self._prepared.move_to_end((video, target.box, target.frame))
        if known is not None:
            frame_size, frames = known
            if target.frame >= frames:
                raise UsageError(f"frame {target.frame}: the video has {frames} frame(s) (0-{frames - 1})")
            check_box(target.box, frame_size, target.frame)
        return prepared

    def store(self, prepared: PreparedTarget) -> None:
        target = prepared.target
        video = self._video_key(Path(target.video))
        if video is None or Path(target.video).is_dir():
            return
        with self._lock:
            self._videos[video] = (tuple(prepared.frame_size), int(prepared.num_frames))
            self._prepared[(video, target.box, target.frame)] = prepared
            for memo in (self._prepared, self._videos):
                while len(memo) > self.capacity:
                    memo.popitem(last=False)
