"""From a chat request to what `Referrer.ask_many` takes: the conversation, the video, the target.

The video comes as a ``file://`` URL (only under an ``--allow-path`` folder) or a ``data:video/...``
URL (written once, by content hash, to the server's upload folder, so the track and feature caches
find it again). A prepared referring record (as `infer videorefbench` reads) becomes a
`PreparedTarget` directly: no tracking, no feature extraction.

Every path a request names (the video, a frame folder's images, a record's data_root, clip_path,
frame_path and each frame) is resolved (``..`` and symlinks followed) and must stay under an allowed
root; a path that is missing and one that is outside get the same 403 answer, so a client learns
nothing about files it may not read. FIFOs, sockets and devices are refused before anything opens them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlparse

from artemis_cli.errors import InputError, UsageError
from artemis_cli.ownvideo.prepare import PreparedTarget, Target
from artemis_cli.ownvideo.referrer import check_question, follow_up_question
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
    system: Optional[str] = None  # the system/developer messages' text: replaces the template's system prompt


def read_conversation(chat: ChatRequest) -> Conversation:
    """Check the messages: system (or developer) messages first, then user/assistant turns starting and
    ending with the user, the video (a `video_url` part) in the first user turn only, the first question
    with its ``<bbox>`` (a ``<bbox>`` in a follow-up is sent as "the target": `follow_up_question`)."""
    leading = 0
    while leading < len(chat.messages) and chat.messages[leading].role in ("system", "developer"):
        leading += 1
    system_texts = [m.text().strip() for m in chat.messages[:leading]]
    turns = chat.messages[leading:]
    if any(m.role in ("system", "developer") for m in turns):
        raise UsageError("messages: system and developer messages go first, before the conversation")
    if any(m.videos() for m in chat.messages[:leading]):
        raise UsageError("messages: the video_url part goes in the first user message")
    roles = [m.role for m in turns]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if not roles or roles != expected or roles[-1] != "user":
        raise UsageError(f"messages: expected alternating user/assistant turns starting and ending with user, got "
                         f"{', '.join(roles[:12]) or 'none'}{' ...' if len(roles) > 12 else ''}")
    videos = [(i, url) for i, m in enumerate(turns) for url in m.videos()]
    if len(videos) > 1 or any(i != 0 for i, _ in videos):
        raise UsageError("messages: one video_url part, in the first user message")
    if chat.record is None and not videos:
        raise UsageError("messages: the video is missing: add a {'type': 'video_url', 'video_url': {'url': "
                         "'file://...' or 'data:video/mp4;base64,...'}} part to the first user message "
                         "(or pass a prepared 'record')")
    if chat.record is not None and videos:
        raise UsageError("messages: a request with a prepared 'record' takes no video_url part")
    texts = [m.text().strip() for m in turns]
    # a <bbox> in a follow-up means the same target: it goes to the model as "the target" (as in chat and web)
    texts = [follow_up_question(t) if i > 0 and turns[i].role == "user" else t for i, t in enumerate(texts)]
    history = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    question = texts[-1]
    if not question:
        raise UsageError("messages: the last user message has no text (the question)")
    check_question(_short(question), [(_short(q), a) for q, a in history])
    system = "\n".join(t for t in system_texts if t) if leading else None
    return Conversation(question=question, history=history, video_url=videos[0][1] if videos else None,
                        system=system)


def _short(text: str, limit: int = 200) -> str:
    """A question as error messages may quote it."""
    return text if len(text) <= limit else text[:limit] + "..."


NOT_READABLE = "not found, or outside the folders this server may read (--allow-path)"


def allowed_path(path: Path, allow: Sequence[Path], what: str) -> Path:
    """`path` resolved (symlinks and ``..`` followed); a `Forbidden` with one message whether it is outside
    every allowed root or does not exist (a client learns nothing about paths it may not read)."""
    if not allow:
        raise Forbidden(f"{what}: this server reads no local files (it was started without --allow-path)")
    try:
        resolved = Path(os.path.realpath(path, strict=True))
    except (OSError, ValueError, RuntimeError):  # missing, a symlink loop, a NUL byte
        raise Forbidden(f"{what}: {NOT_READABLE}") from None
    if not any(resolved == root or root in resolved.parents for root in allow):
        raise Forbidden(f"{what}: {NOT_READABLE}")
    return resolved


def _kind(path: Path) -> str:
    """"file", "folder" or "other" (a FIFO, socket or device: opening it could block forever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def video_path(url: str, *, allow: Sequence[Path], upload_dir: Path) -> tuple[Path, bool]:
    """The local video (file or frame folder) of a ``file://`` or ``data:`` URL, and whether this call
    wrote it (a new upload, to remove again if its request fails)."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise UsageError("video_url: a data URL must be data:video/<type>;base64,<data>")
        mime = match["mime"].lower()
        if mime not in VIDEO_TYPES:
            raise UsageError(f"video_url: unsupported type {mime[:80]} (expected {', '.join(sorted(VIDEO_TYPES))})")
        try:
            data = base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("video_url: the data URL is not valid base64") from None
        if not data:
            raise UsageError("video_url: the data URL holds no bytes")
        from artemis_cli.common.atomic import atomic_write_bytes

        path = upload_dir / f"{hashlib.sha256(data).hexdigest()}{VIDEO_TYPES[mime]}"
        if path.is_file():
            return path, False
        atomic_write_bytes(path, data)
        return path, True
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise UsageError(f"video_url: {parsed.scheme[:20] or 'a plain path'} URLs are not read (the server fetches "
                         "nothing): use file:///path (under --allow-path) or data:video/mp4;base64,...")
    if parsed.netloc not in ("", "localhost"):
        raise UsageError("video_url: a file URL with a host: expected file:///absolute/path")
    resolved = allowed_path(Path(unquote(parsed.path)), allow, "video_url")
    kind = _kind(resolved)
    if kind == "other":
        raise UsageError("video_url: not a regular file or a folder of frames (a FIFO, socket or device)")
    if kind == "folder":  # each image of a frame folder must stay under the allowed roots too
        for entry in _images(resolved):
            if _kind(allowed_path(resolved / entry, allow, "video_url")) != "file":
                raise UsageError("video_url: the frame folder holds something other than regular image files")
    return resolved, False


def _images(folder: Path) -> list[str]:
    from artemis_cli.ownvideo.video import IMAGE_SUFFIXES

    try:
        return [e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in IMAGE_SUFFIXES
                and not e.name.startswith(".")]
    except OSError:
        raise Forbidden(f"video_url: {NOT_READABLE}") from None


def video_target(chat: ChatRequest, conversation: Conversation, *, allow: Sequence[Path],
                 upload_dir: Path) -> tuple[Target, bool]:
    """The request's `Target` and whether its video is a new upload (see `video_path`)."""
    path, created = video_path(conversation.video_url or "", allow=allow, upload_dir=upload_dir)
    return Target(video=path, box=tuple(float(v) for v in chat.box), frame=chat.frame,
                  more=tuple(key.pair() for key in chat.keys)), created


class RecordTarget(PreparedTarget):
    """A `PreparedTarget` read from a referring record: its frames are the record's frame_id list, so a
    frame's number is its position there (a key frame outside the list counts as -1)."""

    def frame_number(self, frame_id) -> int:
        ids = self.record["frame_id"]
        return ids.index(frame_id) if frame_id in ids else -1


MAX_RECORD_FRAMES = 20_000


def record_target(raw: dict, data_root: str, *, allow: Sequence[Path]) -> RecordTarget:
    """A prepared referring record (VideoRef format; clip_path / frame_path relative to `data_root`) as a
    `PreparedTarget`; a malformed record is a `UsageError` naming the field, and any path it names (the
    data root, the feature file, the frame folder, each frame) that is missing, not a regular file or
    outside the allowed roots a `Forbidden` with one message for all."""
    from pydantic import ValidationError

    from artemis_cli.data.records import ReferringRecord, referring_rules

    try:
        record = ReferringRecord.model_validate(raw)
    except ValidationError as exc:
        problems = [f"record.{'.'.join(str(p) for p in e['loc'])[:100]}: {e['msg']}" for e in exc.errors()[:5]]
        raise UsageError("; ".join(problems)) from None
    if len(record.frame_id) > MAX_RECORD_FRAMES:
        raise UsageError(f"record.frame_id: {len(record.frame_id)} frames, over the limit of {MAX_RECORD_FRAMES}")
    rules = referring_rules(record)
    if rules:
        raise UsageError("; ".join(f"record.{field}: {message}" for field, message in rules[:5]))

    def checked(path: Path, what: str, kind: str) -> Path:
        resolved = allowed_path(path, allow, what)
        if _kind(resolved) != kind:
            raise Forbidden(f"{what}: {NOT_READABLE}")
        return resolved

    root = checked(Path(data_root), "data_root", "folder")
    checked(root / record.clip_path, "record.clip_path", "file")
    frames = checked(root / record.frame_path, "record.frame_path", "folder")
    for index, frame_id in enumerate(record.frame_id):
        checked(frames / str(frame_id), f"record.frame_id[{index}]", "file")
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
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"record.frame_id[0]: cannot read the frame ({type(exc).__name__})") from None


class PreparedTargets:
    """An in-memory memo in front of `Referrer.prepare`, keyed by the video's path, size and mtime and the
    target (box, frame, further keys). A memo hit needs no preparation slot (not even a cache lookup
    that hashes the video), so the next batch gathers every request that arrived meanwhile. Videos
    seen before also get their box and frame checked at once (a bad box is a 400 without any work)."""

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
        """The memoised preparation of `target` (None when unknown, or when the cache quota has since
        evicted its files); a box outside a known video's frame (or a frame past its end) is a
        `UsageError` here."""
        from artemis_cli.ownvideo.video import check_box

        video = self._video_key(Path(target.video))
        if video is None or Path(target.video).is_dir():  # frame folders: their files change, not the folder
            return None
        with self._lock:
            known = self._videos.get(video)
            prepared = self._prepared.get((video, target.box, target.frame, target.more))
            if prepared is not None:
                self._prepared.move_to_end((video, target.box, target.frame, target.more))
        if known is not None:
            frame_size, frames = known
            if target.frame >= frames:
                raise UsageError(f"frame {target.frame}: the video has {frames} frame(s) (0-{frames - 1})")
            check_box(target.box, frame_size, target.frame)
            for frame, box in target.more:
                if frame >= frames:
                    raise UsageError(f"keys: frame {frame}: the video has {frames} frame(s) (0-{frames - 1})")
                check_box(box, frame_size, frame)
        if prepared is not None and not all(path.exists() for path in files_of(prepared)):
            return None  # evicted
        return prepared

    def forget(self, video: Path) -> None:
        """Drop what is known of `video` (a removed upload)."""
        with self._lock:
            for memo in (self._prepared, self._videos):
                for key in [k for k in memo if (k[0] if memo is self._videos else k[0][0]) == str(video)]:
                    memo.pop(key, None)

    def store(self, prepared: PreparedTarget) -> None:
        target = prepared.target
        video = self._video_key(Path(target.video))
        if video is None or Path(target.video).is_dir():
            return
        with self._lock:
            self._videos[video] = (tuple(prepared.frame_size), int(prepared.num_frames))
            self._prepared[(video, target.box, target.frame, target.more)] = prepared
            for memo in (self._prepared, self._videos):
                while len(memo) > self.capacity:
                    memo.popitem(last=False)


def files_of(prepared: PreparedTarget) -> list[Path]:
    """The track folder and feature file of a prepared target in the cache: what its answer reads."""
    root, record = Path(prepared.root), prepared.record
    return [(root / record["frame_path"]).parent, root / record["clip_path"]] if "frame_path" in record else []
