"""The DATA_ROOT layout of the published data: which folder each stage needs, where records' files
resolve (`reference_folders`), and a check of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from artemis_cli.data.report import Report


@dataclass(frozen=True)
class Source:
    """One folder of DATA_ROOT (relative path), the stages that read it, and where it comes from."""

    path: str
    stages: tuple[int, ...]
    what: str
    not_redistributed: Optional[str] = None  # where users fetch it when the authors don't ship it


ARTEMIS_DATA = "Artemis_data"

SOURCES: tuple[Source, ...] = (
    Source("llava_image", (1,), "LLaVA pretrain images (stage 1)"),
    Source("valley", (1,), "Valley video clip features (stage 1)"),
    Source("llava_image_tune", (2,), "LLaVA instruct images (stage 2)"),
    Source("videochatgpt_tune", (2,), "Video-ChatGPT instruct clip features (stage 2)"),
    Source(f"{ARTEMIS_DATA}/HC-STVG", (3,), "HC-STVG clips and frames (VideoRef45K, VideoRefBench)"),
    Source(f"{ARTEMIS_DATA}/MeViS_release", (3,), "MeViS frames (VideoRef45K)",
           not_redistributed="the official MeViS release (https://github.com/henghuiding/MeViS)"),
    Source(f"{ARTEMIS_DATA}/A2D_sentences", (3,), "A2D Sentences frames (VideoRef45K)"),
    Source(f"{ARTEMIS_DATA}/VID-sentence", (3,), "VID-Sentence frames (VideoRef45K)"),
    Source(f"{ARTEMIS_DATA}/GOT-10k/clip_feature", (3,), "GOT-10k clip features (VideoRef45K)"),
    Source(f"{ARTEMIS_DATA}/GOT-10k/data/full_data/train", (3,), "GOT-10k training frames (VideoRef45K)",
           not_redistributed="the official GOT-10k site (http://got-10k.aitestunion.com/downloads), full_data/train"),
    Source(f"{ARTEMIS_DATA}/LaSOT", (3,), "LaSOT frames (VideoRef45K)"),
    Source(f"{ARTEMIS_DATA}/MGIT/clip_feature", (3,), "MGIT clip features (VideoRef45K)"),
    Source(f"{ARTEMIS_DATA}/MGIT/MGIT-Train", (3,), "MGIT training frames (VideoRef45K)",
           not_redistributed="the official MGIT / VideoCube site (http://videocube.aitestunion.com/)"),
)

# Where stage 1-2 conversation records resolve their media paths (per stage; DATA_ROOT itself after them).
IMAGE_FOLDERS = {1: "llava_image", 2: "llava_image_tune"}
VIDEO_FEATURE_FOLDERS = {1: "valley", 2: "videochatgpt_tune"}


def reference_folders(root: Path, stage: Optional[int]) -> tuple[list[Path], list[Path]]:
    """(image folders, video folders) where the records of `stage` resolve their file paths, in search
    order: stage 1-2 media under that stage's folders, then DATA_ROOT itself; stage 3 / VideoRefBench
    clips and frames under DATA_ROOT/Artemis_data. `stage` None: every stage 1-2 folder (a file's stage
    is not known)."""
    if stage == 3:
        return [], [root / ARTEMIS_DATA]
    stages = (stage,) if stage in (1, 2) else (1, 2)
    return ([root / IMAGE_FOLDERS[s] for s in stages] + [root],
            [root / VIDEO_FEATURE_FOLDERS[s] for s in stages] + [root])


def sources_for(stage: str) -> list[Source]:
    """The folders `stage` needs; ``none`` (a dataset of one's own, `data build-referring`) needs none of them."""
    if stage == "none":
        return []
    if stage == "all":
        return list(SOURCES)
    wanted = int(stage)
    return [s for s in SOURCES if wanted in s.stages]


def check_layout(root: Path, stage: str, report: Report) -> None:
    """Add a problem for a DATA_ROOT that is not a folder, and for each missing or empty source."""
    if not root.exists():
        report.error("layout", str(root), None, None, "DATA_ROOT does not exist")
        return
    if not root.is_dir():
        report.error("layout", str(root), None, None, "DATA_ROOT is a file, expected a folder")
        return
    sources = sources_for(stage)
    if sources:
        report.checked.append(f"the {len(sources)} source folder(s) stage {stage} reads "
                              f"({', '.join(s.path for s in sources)})")
    for source in sources:
        folder = root / source.path
        stages = ",".join(str(s) for s in source.stages)
        problem = _folder_problem(folder)
        if problem is None:
            continue
        message = f"{problem}: {source.what}, needed by stage {stages}"
        if source.not_redistributed:
            message += f"; the authors do not redistribute it, download it from {source.not_redistributed}"
        report.error("layout", str(folder), None, None, message)


def _folder_problem(folder: Path) -> Optional[str]:
    try:
        with os.scandir(folder) as entries:
            for _ in entries:
                return None
        return "folder is empty"
    except FileNotFoundError:
        return "folder is missing"
    except NotADirectoryError:
        return "is a file, expected a folder"
    except PermissionError:
        return "folder is not readable (permission denied)"
    except OSError as exc:
        return f"folder cannot be read ({exc.strerror})"


class ListingCache:
    """Answers "does folder/name exist?" from one directory listing per folder.

    Checking millions of frame references one `stat` at a time is the slow part of a deep check;
    real datasets reuse a few thousand folders, so one `scandir` each is far cheaper.
    """

    def __init__(self) -> None:
        self._listings: dict[str, Optional[tuple[frozenset[str], frozenset[str]]]] = {}

    def _listing(self, folder: str) -> Optional[tuple[frozenset[str], frozenset[str]]]:
        if folder not in self._listings:
            try:
                files, dirs = [], []
                with os.scandir(folder) as entries:
                    for entry in entries:
                        (dirs if entry.is_dir() else files).append(entry.name)
                self._listings[folder] = (frozenset(files), frozenset(dirs))
            except OSError:
                self._listings[folder] = None
        return self._listings[folder]

    def is_file(self, path: str) -> bool:
        folder, name = os.path.split(os.path.normpath(path))
        listing = self._listing(folder)
        return listing is not None and name in listing[0]

    def is_dir(self, path: str) -> bool:
        return self._listing(os.path.normpath(path)) is not None

    def files_in(self, folder: str) -> Optional[frozenset[str]]:
        listing = self._listing(os.path.normpath(folder))
        return None if listing is None else listing[0]
