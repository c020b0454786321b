"""`track_video`: one box on one frame -> a VideoRef record with its frames and clip feature (`artemis track`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.devices import DeviceName
from artemis_cli.errors import UsageError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # the published feature recipe's tower


class TrackConfig(BaseModel):
    """Everything `track_video` needs; `clip_model` None = write no clip feature (only name where it goes)."""

    model_config = ConfigDict(extra="forbid")

    video: Path
    box: tuple[float, float, float, float]
    frame: int = Field(0, ge=0)
    more_keys: list[tuple[int, tuple[float, float, float, float]]] = Field(default_factory=list)  # (frame, box)
    output: Path
    tracker: str = "csrt"
    tracker_model: Optional[str] = None
    stride: Optional[int] = Field(None, ge=1)  # None: about 6 tracked frames a second
    clip_model: Optional[str] = DEFAULT_CLIP
    preview: Optional[Path] = None
    cache_dir: Optional[Path] = None
    device: DeviceName = "auto"
    overwrite: bool = False


@dataclass
class TrackSummary:
    output: Path
    record: dict
    track: dict
    timings: dict[str, float]
    preview: Optional[Path] = None
    features: bool = True
    next_commands: list[str] = field(default_factory=list)
    quality: str = ""  # the one-line track quality summary
    warnings: list[str] = field(default_factory=list)  # decoding damage
    manifest: Optional[Path] = None

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "record": self.record, "track": self.track,
                "timings": {k: round(v, 4) for k, v in self.timings.items()},
                "preview": str(self.preview) if self.preview else None, "features": self.features,
                "quality": self.quality, "warnings": self.warnings,
                "manifest": str(self.manifest) if self.manifest else None, "next": self.next_commands}


def check_output(output: Path, video: Path, suffixes: tuple[str, ...] = (".json",)) -> None:
    """An output must have the right suffix and must not be, or lie inside, the input video folder."""
    if output.suffix.lower() not in suffixes:
        raise UsageError(f"-o {output}: expected a {' or '.join(suffixes)} file")
    video_resolved, out_resolved = video.resolve(), output.resolve()
    if out_resolved == video_resolved or (video.is_dir() and video_resolved in out_resolved.parents):
        raise UsageError(f"-o {output}: lies inside the input {video}", hint="write the output somewhere else")


def sam2_for(tracker: str, tracker_model: Optional[str], device: str):
    """The SAM 2 (model, processor) when `tracker` is sam2, else None."""
    if tracker != "sam2":
        return None
    import torch

    from artemis_cli.common.devices import resolve_device
    from artemis_cli.ownvideo.trackers import load_sam2

    name = resolve_device(device)
    return load_sam2(tracker_model, name, torch.float16 if name.startswith("cuda") else torch.float32)


def track_video(config: TrackConfig, progress=None) -> TrackSummary:
    """Track the key boxes through `config.video`, write the record (``-o``), its frames and clip feature
    beside it, its manifest (confidences, cuts, warnings, settings) and the preview; return what was written
    (see `record.write_track` for the layout). The frames are decoded once more, straight into the output
    (and the preview): nothing is copied through the cache."""
    from artemis_cli.common.manifest import build_manifest
    from artemis_cli.ownvideo.cache import FeatureCache, TrackCache
    from artemis_cli.ownvideo.preview import Preview, check_preview_path, tee
    from artemis_cli.ownvideo.record import manifest_path, write_track
    from artemis_cli.ownvideo.prepare import Target, prepare_target
    from artemis_cli.ownvideo.trackers import TRACKERS
    from artemis_cli.ownvideo.video import check_video_path, default_cache_dir, iter_selected

    if config.tracker not in TRACKERS:
        raise UsageError(f"--tracker {config.tracker!r}: expected one of {', '.join(TRACKERS)}")
    check_video_path(config.video)
    check_output(config.output, config.video)
    check_preview_path(config.preview)
    if config.output.exists() and not config.overwrite:
        raise UsageError(f"{config.output} already exists", hint="pass --overwrite to replace it, or choose another -o")
    cache = config.cache_dir or default_cache_dir()
    tracks = TrackCache(cache)
    features = FeatureCache(cache, config.clip_model, device=config.device) if config.clip_model else None
    sam2 = sam2_for(config.tracker, config.tracker_model, config.device)
    target = Target(config.video, config.box, config.frame, tuple(config.more_keys))
    prepared = prepare_target(target, tracks=tracks, features=features, tracker=config.tracker,
                              tracker_model=config.tracker_model, sam2=sam2, stride=config.stride, progress=progress)
    clip = prepared.root / prepared.record["clip_path"] if features is not None else None
    preview = (Preview(config.preview, prepared.record, prepared.frame_indices,
                       [k["frame"] for k in prepared.track.get("key_boxes", [])], prepared.track)
               if config.preview is not None else None)
    manifest = build_manifest("track", settings={"tracker": config.tracker, "tracker_model": config.tracker_model,
                                                 "stride": config.stride, "clip_model": config.clip_model,
                                                 "video": str(config.video), "video_hash": prepared.video_hash},
                              track=prepared.track)
    frames = tee(iter_selected(prepared.info, prepared.frame_indices), preview)
    record = write_track(config.output, prepared.record, frames, prepared.num_frames, clip, manifest=manifest,
                         overwrite=config.overwrite)
    written_preview = preview.close() if preview is not None else None
    root = config.output.parent
    next_commands = [f"artemis infer videorefbench --annotations {config.output} --data-root {root} --model MODEL "
                     "-o preds.jsonl"]
    if features is None:
        next_commands.insert(0, f"(no clip feature written: rerun with --clip-model to write {root}/Artemis_data/"
                                f"{record['clip_path']})")
    return TrackSummary(output=config.output, record=record, track=prepared.track_json(), timings=prepared.timings,
                        preview=written_preview, features=features is not None, next_commands=next_commands,
                        quality=prepared.quality_line(), warnings=prepared.warnings(),
                        manifest=manifest_path(config.output))
