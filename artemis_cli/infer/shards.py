"""Shard outputs of `infer` and their merge: where a shard writes, and a checked `merge`.

A shard is a contiguous slice of the input (`common.sharding`, the rule `features extract` uses too). Every
output has a manifest beside it that records the run settings and the full ordered list of input
ids, so `merge_predictions` can check that every input id appears exactly once across the shards
and write the merge in input order without re-reading the annotations.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from artemis_cli.common.jsonl_writer import read_complete_lines
from artemis_cli.common.sharding import Shard, resolve_shard  # noqa: F401  (infer.runner reads both here)
from artemis_cli.errors import InputError, UsageError

MAX_LISTED = 20


@dataclass(frozen=True)
class OutputPaths:
    output: Path
    errors: Path
    manifest: Path


def output_paths(output: str | os.PathLike, shard: Shard = Shard()) -> OutputPaths:
    """``X.jsonl`` -> X.jsonl, X.errors.jsonl, X.manifest.json; shard K of N writes ``X.shard-K-of-N.*``."""
    output = Path(output)
    stem = output.stem if output.suffix in (".jsonl", ".json") else output.name
    if shard.count > 1:
        stem = shard.file_name(stem)
        output = output.with_name(stem + (output.suffix or ".jsonl"))
    return OutputPaths(output, output.with_name(f"{stem}.errors.jsonl"), output.with_name(f"{stem}.manifest.json"))


def read_manifest(path: Path) -> dict:
    from artemis_cli.common.jsonio import load_json

    data = load_json(path)
    if not isinstance(data, dict) or "settings" not in data or "input_ids" not in data:
        raise InputError(f"{path}: not an `artemis infer` manifest (no settings / input_ids)")
    problems = []
    if not isinstance(data["settings"], dict):
        problems.append("settings: expected an object")
    if not isinstance(data["input_ids"], list) or not all(isinstance(i, str) for i in data["input_ids"]):
        problems.append("input_ids: expected a list of strings")
    if not isinstance(data.get("sources", {}), dict):
        problems.append("sources: expected an object")
    if not isinstance(data.get("runs"), list):
        problems.append("runs: expected a list")
    shard = data.get("shard")
    if not (isinstance(shard, dict) and all(type(shard.get(k)) is int for k in ("count", "index"))
            and 0 <= shard["index"] < shard["count"]):
        problems.append("shard: expected {count, index} integers with 0 <= index < count")
    if problems:
        raise InputError(f"{path}: broken `artemis infer` manifest: {'; '.join(problems)}",
                         hint="rerun the shard with --overwrite, or restore the manifest")
    return data


def read_predictions(path: Path) -> tuple[list[dict], bool]:
    """Complete lines of a prediction file, and whether a torn last line (a killed run) was ignored."""
    lines, _, torn = read_complete_lines(path)
    for number, record in lines:
        if "id" not in record:
            raise InputError(f"{path}:{number}: a prediction line needs an 'id'")
    return [record for _, record in lines], torn


@dataclass
class MergeReport:
    output: Path
    inputs: int = 0
    written: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing_shards: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # missing id -> error recorded by its shard
    notes: list[str] = field(default_factory=list)
    wrote: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.unknown or self.missing_shards)

    def blocked(self, allow_missing: bool) -> bool:
        """Whether nothing may be written: duplicate/unknown ids always, missing ids/shards unless allowed."""
        return bool(self.duplicates or self.unknown or (not allow_missing and (self.missing or self.missing_shards)))

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "ok": self.ok, "wrote": self.wrote, "inputs": self.inputs,
                "written": self.written, "missing": self.missing, "duplicates": self.duplicates,
                "unknown": self.unknown, "missing_shards": self.missing_shards, "failed": self.failed,
                "notes": self.notes}


def _failures(shard_file: Path) -> dict[str, str]:
    errors = output_paths(shard_file).errors
    if not errors.is_file():
        return {}
    return {str(record["id"]): str(record.get("error", "")) for record in read_predictions(errors)[0]}


def merge_predictions(output: str | os.PathLike, shards: Sequence[str | os.PathLike], *,
                      allow_missing: bool = False) -> MergeReport:
    """Check and merge shard outputs into `output` (input order) plus its manifest.

    Every input id (from the shards' manifests) must appear exactly once across `shards`; the
    shard files must come from one run (same settings and inputs) and cover every shard index.
    Nothing is written when an id is duplicated or unknown, or (unless `allow_missing`) missing.
    """
    from artemis_cli.common.atomic import atomic_open, atomic_write_json

    report = MergeReport(Path(output))
    files = [Path(s) for s in shards]
    if not files:
        raise UsageError("no shard files given")
    manifests = []
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: no such prediction file")
        manifest_path = output_paths(path).manifest
        if not manifest_path.is_file():
            raise InputError(f"{path}: no manifest beside it ({manifest_path.name})",
                             hint="merge takes the outputs of `artemis infer ...`, which writes one per shard")
        manifests.append(read_manifest(manifest_path))
    first = manifests[0]
    for path, manifest in zip(files[1:], manifests[1:]):
        if manifest["settings"] != first["settings"] or manifest["input_ids"] != first["input_ids"]:
            differing = sorted(k for k in set(first["settings"]) | set(manifest["settings"])
                               if first["settings"].get(k) != manifest["settings"].get(k))
            what = f"settings differ ({', '.join(differing)})" if differing else "input ids differ"
            raise InputError(f"{path}: not from the same run as {files[0]}: {what}")
        if manifest.get("sources") != first.get("sources"):
            report.notes.append(f"{path}: model or input paths differ from {files[0]} (same settings and ids)")
    counts = [m["shard"]["count"] for m in manifests]
    if len(set(counts)) > 1:
        raise InputError(f"the shard files disagree on the number of shards: {sorted(set(counts))}")
    indexes = Counter(m["shard"]["index"] for m in manifests)
    repeated = sorted(i for i, n in indexes.items() if n > 1)
    if repeated:
        raise UsageError(f"shard index(es) {repeated} given more than once")
    report.missing_shards = [i for i in range(counts[0]) if i not in indexes]

    input_ids = [str(i) for i in first["input_ids"]]
    report.inputs = len(input_ids)
    known = set(input_ids)
    by_id: dict[str, dict] = {}
    seen: Counter[str] = Counter()
    for path in files:
        records, torn = read_predictions(path)
        if torn:
            report.notes.append(f"{path}: ignored an incomplete last line (the run was killed; rerun it to finish)")
        for record in records:
            key = str(record["id"])
            seen[key] += 1
            by_id.setdefault(key, record)
        for key, message in _failures(path).items():
            report.failed[key] = message
    report.duplicates = sorted(k for k, n in seen.items() if n > 1)
    report.unknown = sorted(k for k in seen if k not in known)
    report.missing = [k for k in input_ids if k not in seen]
    report.failed = {k: v for k, v in report.failed.items() if k in set(report.missing)}
    if report.blocked(allow_missing):
        return report
    lines = [by_id[k] for k in input_ids if k in by_id]
    with atomic_open(report.output, "w") as handle:
        for record in lines:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    merged = {**first, "shard": {"count": 1, "index": 0}, "runs": [], "merged_from": [str(p) for p in files],
              "missing": report.missing}
    atomic_write_json(output_paths(report.output).manifest, merged)
    report.written, report.wrote = len(lines), True
    return report
