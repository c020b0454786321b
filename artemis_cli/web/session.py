"""One browser session's state on the server: its temp folder, the video it uploaded, the target it
talks about and the conversation so far. The folder goes when the session ends (tab closed or idle)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from artemis_cli.web.frames import VideoInfo, editor_scale

_counter = itertools.count()


@dataclass
class WebSession:
    folder: Path
    video: Optional[Path] = None  # the session's own link to the upload (gradio's cache may expire it)
    name: str = ""  # the upload's file name, for messages
    kind: str = ""  # "video" (a file) or "frames" (a folder of images): the input it came from
    info: Optional[VideoInfo] = None
    frame: int = 0
    scale: int = 1  # the box editor shows the frame enlarged this many times
    prepared: Any = None  # PreparedTarget of the current conversation
    target_key: Optional[tuple] = None  # (video, key boxes, tracker) `prepared` was made for
    history: list[tuple[str, str]] = field(default_factory=list)
    keys: list[tuple[int, tuple]] = field(default_factory=list)  # key boxes added: (frame, box in video pixels)
    tracks: list[Path] = field(default_factory=list)  # the track videos made for this session

    @property
    def fps(self) -> Optional[float]:
        return self.info.fps if self.info is not None else None

    def editor_scale(self) -> int:
        return editor_scale(self.info) if self.info is not None else 1

    def reset_target(self) -> None:
        self.prepared, self.target_key, self.history = None, None, []

    def set_video(self, upload: Path, info: Optional[VideoInfo] = None) -> None:
        """Keep the upload under the session folder (a hard link when possible, else a copy), under its own
        name: the own-video library names (and seeds) a video by its file name, as `artemis ask` would."""
        self.drop_video()
        local = self.folder / f"upload-{next(_counter)}" / upload.name
        local.parent.mkdir(parents=True, exist_ok=True)
        _link(upload, local)
        self._adopt(local, upload.name, "video", info)

    def set_frames(self, images: list[Path]) -> None:
        """Keep an uploaded folder of frames (`images`, checked by `frames.sort_frame_images`) as one frame folder
        under the session folder, named ``frames``: the own-video library reads it as `artemis ask frames/`
        does (the browser does not tell the folder's own name)."""
        self.drop_video()
        local = self.folder / f"upload-{next(_counter)}" / "frames"
        local.mkdir(parents=True)
        for image in images:
            _link(image, local / image.name)
        self._adopt(local, "frames", "frames")

    def drop_video(self) -> None:
        if self.video is not None:
            shutil.rmtree(self.video.parent, ignore_errors=True)
        self._adopt(None, "", "")

    def _adopt(self, video: Optional[Path], name: str, kind: str, info: Optional[VideoInfo] = None) -> None:
        """The session's video from now on (None: none), at frame 0, with no key boxes and a new conversation."""
        self.video, self.name, self.kind, self.info, self.frame = video, name, kind, info, 0
        self.scale = self.editor_scale()
        self.keys = []
        self.reset_target()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` when the file system allows it, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class SessionFolders:
    """The server's temp root: one folder per session inside it, and the whole root removed at shutdown."""

    def __init__(self, parent: Optional[Path] = None):
        self.root = Path(tempfile.mkdtemp(prefix="artemis-web-", dir=parent))

    def new(self, key: Optional[str] = None) -> WebSession:
        """A session's state and folder; `key` is gradio's session hash (so `end` can find the folder)."""
        if not key:
            return WebSession(Path(tempfile.mkdtemp(prefix="session-", dir=self.root)))
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        return WebSession(folder)

    def end(self, key: Optional[str]) -> None:
        """The browser tab of session `key` closed: its folder (upload, frames) goes now."""
        if key:
            shutil.rmtree(self._folder(key), ignore_errors=True)

    def _folder(self, key: str) -> Path:
        return self.root / ("session-" + "".join(c for c in key if c.isalnum())[:64])

    def live(self) -> list[Path]:
        return sorted(p for p in self.root.glob("session-*") if p.is_dir())

    def close(self) -> None:
        import time

        for _ in range(3):  # the server's threads may still be writing while it stops
            shutil.rmtree(self.root, ignore_errors=True)
            if not self.root.exists():
                return
            time.sleep(0.2)


def end_session(session: Optional[WebSession]) -> None:
    """gradio's delete callback for the session state."""
    if isinstance(session, WebSession):
        session.close()
