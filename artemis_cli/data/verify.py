"""`verify_layout`: check a DATA_ROOT, its annotation files and (optionally) every feature file."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Optional

from artemis_cli.data.annotations import AnnotationChecker, check_qa_pairs, find_annotation_files
from artemis_cli.data.feature_files import FEATURE_SUFFIXES, load_feature
from artemis_cli.data.layout import check_layout
from artemis_cli.data.report import Report
from artemis_cli.errors import InputError

VIDEO_TOKENS = 100  # temporal rows of a published feature: 100 frames, zero-padded
SPATIAL_TOKENS = 256  # CLIP ViT-L/14 at 224 px: 16 x 16 patches
FEATURE_ROWS = VIDEO_TOKENS + SPATIAL_TOKENS


def verify_layout(data_root: Path, annotations: Optional[Path] = None, stage: str = "all",
                  check_features: bool = False, show_progress: bool = False) -> Report:
    """Check `data_root` (and the annotation files under `annotations`); return every problem found."""
    if stage == "none" and annotations is None:
        from artemis_cli.errors import UsageError

        raise UsageError("--stage none checks no source folder, and no --annotations were given: nothing to check",
                         hint="pass --annotations PATH (the records of a dataset of your own), or a --stage")
    report = Report()
    check_layout(data_root, stage, report)
    root_ok = data_root.is_dir()

    checker: Optional[AnnotationChecker] = None
    if annotations is not None:
        files = find_annotation_files(annotations, report)
        report.counts["annotation_files"] = len(files)
        with _progress(show_progress) as progress:
            task = progress.add_task("annotations", total=None) if progress else None
            advance = (lambda n: progress.advance(task, n)) if progress else None
            checker = AnnotationChecker(report, data_root if root_ok else None, on_record=advance,
                                        stage=int(stage) if stage in ("1", "2", "3") else None)
            infos = [checker.check_file(path) for path in files]
        check_qa_pairs(infos, report)
        report.counts["records"] = sum(checker.kind_counts.values())
        report.counts["records_by_kind"] = dict(sorted(checker.kind_counts.items()))
        report.checked.append(f"{report.counts['records']} annotation record(s) in {len(files)} file(s), and the "
                              "frames and feature files they name")
    else:
        report.not_checked.append("annotation records and the files they name (pass --annotations)")

    if check_features:
        paths = set(checker.feature_refs) if checker else set()
        if root_ok:
            paths.update(_feature_files_under(data_root))
        _check_feature_files(sorted(paths), report, show_progress)
        report.checked.append(f"the contents of {len(paths)} feature file(s)")
    else:
        report.not_checked.append("the contents of feature files (pass --check-features)")
    return report


def _feature_files_under(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in filenames if n.lower().endswith(FEATURE_SUFFIXES))
    return found


def _check_feature_files(paths: list[str], report: Report, show_progress: bool) -> None:
    """Each feature must load safely as a 2-D float16 [356, C] array, with one C for the dataset."""
    widths: dict[str, int] = {}
    with _progress(show_progress) as progress:
        task = progress.add_task("features", total=len(paths)) if progress else None
        for path in paths:
            if progress:
                progress.advance(task)
            try:
                array = load_feature(path)
            except InputError as exc:
                report.error("feature", path, None, None, exc.message)
                continue
            if array.ndim != 2 or array.shape[0] != FEATURE_ROWS:
                report.error("feature", path, None, "shape",
                             f"shape {list(array.shape)}, expected [{FEATURE_ROWS}, C] (100 temporal + 256 spatial rows)")
                continue
            if array.dtype.name != "float16":
                report.error("feature", path, None, "dtype", f"dtype {array.dtype.name}, expected float16")
            widths[path] = int(array.shape[1])
    report.counts["feature_files_checked"] = len(paths)
    if not widths:
        return
    common, _ = Counter(widths.values()).most_common(1)[0]
    report.counts["feature_width"] = common
    for path, width in widths.items():
        if width != common:
            report.error("feature", path, None, "shape", f"width C={width}, but the rest of the dataset has C={common}")


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from artemis_cli.common.console import make_progress

    return make_progress(transient=True)
