"""`score`: COCO caption metrics for VideoRefBench predictions, with the paper's protocol.

`score(records, options)` is the library entry point; `score_file(path, options)` reads a `.jsonl`
or `.json` prediction file first. Values are pycocoevalcap's own (0-1 scale).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from artemis_cli.common.atomic import atomic_open
from artemis_cli.errors import InputError
from artemis_cli.metrics import coco
from artemis_cli.metrics.bertscore import BertScoreOptions
from artemis_cli.metrics.protocol import CAPTION, MAX_PRED_CHARS, MIN_PRED_CHARS, PROTOCOLS, Pair, prepare_pairs

MetricGroup = Literal["bleu", "meteor", "rouge", "cider", "spice"]
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "bleu": coco.BLEU_NAMES, "meteor": ("METEOR",), "rouge": ("ROUGE_L",), "cider": ("CIDEr",), "spice": ("SPICE",),
}
METRIC_NAMES = tuple(name for names in METRIC_GROUPS.values() for name in names)
ProgressCallback = Callable[[str, int, int], None]  # (step description, step index, number of steps)


class ScoreOptions(BaseModel):
    """How to score: which metrics, the protocol switches, record fields, bootstrap, SPICE's CoreNLP."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricGroup] = Field(default_factory=lambda: list(METRIC_GROUPS), min_length=1)
    protocol: Literal[tuple(PROTOCOLS)] = "artemis"  # whose filter (metrics.protocol.PROTOCOLS)
    length_filter: bool = True  # drop predictions of <= 5 or >= 300 characters (the paper's protocol)
    keep_duplicates: bool = False  # score every record, instead of the last one per id
    id_field: str = Field(CAPTION.roles["video"], min_length=1)
    ref_field: str = Field(CAPTION.roles["reference"], min_length=1)
    pred_field: str = Field(CAPTION.roles["pred"], min_length=1)
    bootstrap: int = Field(0, ge=0)  # resamples for 95% confidence intervals; 0: none
    seed: int = 0
    skip_bad: bool = False
    corenlp_dir: Optional[Path] = None
    bertscore: Optional[BertScoreOptions] = None  # add BERTScore (bert-score) on the same pairs

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return [group for group in METRIC_GROUPS if group in value]  # fixed order, no repeats

    @model_validator(mode="after")
    def _distinct_fields(self) -> "ScoreOptions":
        if len({self.id_field, self.ref_field, self.pred_field}) < 3:
            raise ValueError("id_field, ref_field and pred_field must be three different fields")
        if self.bootstrap == 1:
            raise ValueError("bootstrap needs at least 2 resamples (0 turns it off)")
        if self.protocol != "artemis" and (not self.length_filter or self.keep_duplicates):
            raise ValueError(f"length_filter / keep_duplicates switch Artemis' protocol; the {self.protocol} "
                             "protocol has its own")
        return self

    def for_protocol(self, name: str) -> "ScoreOptions":
        """These options under protocol `name` (its own filter switches)."""
        spec = PROTOCOLS[name]
        if name == "artemis":
            return self.model_copy(update={"protocol": name})
        return self.model_copy(update={"protocol": name, "length_filter": spec.length_filter,
                                       "keep_duplicates": spec.keep_duplicates})


@dataclass
class ScoreReport:
    """What `score` found: counts, corpus metrics (None when not computed, with the reason in
    `unavailable`), optional 95% intervals, and one dict of values per scored record."""

    options: ScoreOptions
    n_input: int
    n_scored: int
    n_dropped_length: int
    n_dropped_duplicate: int
    metrics: dict[str, Optional[float]]
    unavailable: dict[str, str]
    skipped: list[str] = field(default_factory=list)
    ci: Optional[dict[str, tuple[Optional[float], Optional[float]]]] = None
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    java: str = ""
    bertscore: Optional[dict[str, Any]] = None  # P / R / F1 means, bert-score's settings hash and settings
    n_truncated: int = 0  # predictions cut by the protocol (PixelRefer: to 100 words)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON: counts, ``metrics`` (raw 0-1), ``unavailable``; ``n_skipped_bad``
        with skip_bad, ``ci`` with a bootstrap."""
        out: dict[str, Any] = {
            "n_input": self.n_input, "n_scored": self.n_scored,
            "n_dropped_length": self.n_dropped_length, "n_dropped_duplicate": self.n_dropped_duplicate,
            "metrics": {name: finite_or_none(value) for name, value in self.metrics.items()},
            "unavailable": dict(self.unavailable),
        }
        if self.options.skip_bad:
            out["n_skipped_bad"] = len(self.skipped)
        if self.ci is not None:
            out["ci"] = {name: list(bounds) for name, bounds in self.ci.items()}
        if self.bertscore is not None:
            out["bertscore"] = dict(self.bertscore)
        if self.options.protocol != "artemis":
            out.update(protocol=self.options.protocol, n_truncated=self.n_truncated)
        return out


def finite_or_none(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else value


def _located(records: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    for index, item in enumerate(records):
        if isinstance(item, tuple) and len(item) == 2:
            yield str(item[0]), item[1]
        else:
            yield f"record {index}", item


def score(records: Iterable[Any], options: Optional[ScoreOptions] = None, *,
          progress: Optional[ProgressCallback] = None) -> ScoreReport:
    """Score prediction records with pycocoevalcap under the VideoRefBench protocol.

    `records` are dicts with the id, reference and prediction fields, or ``(location, dict)`` pairs
    (the location names the record in errors). Starts each Java tool once. Raises `InputError` for a
    bad record (unless ``options.skip_bad``) or when nothing is left to score.
    """
    options = options or ScoreOptions()
    prepared = prepare_pairs(_located(records), id_field=options.id_field, ref_field=options.ref_field,
                             pred_field=options.pred_field, keep_duplicates=options.keep_duplicates,
                             length_filter=options.length_filter, skip_bad=options.skip_bad,
                             truncate_words=PROTOCOLS[options.protocol].truncate_words)
    if not prepared.pairs:
        raise InputError(_nothing_to_score(prepared.n_input, prepared.n_dropped_length, len(prepared.skipped)),
                         hint="pass --no-length-filter to keep every prediction" if prepared.n_dropped_length else None)
    values, unavailable, ci, java = _run_metrics(prepared.pairs, options, progress)
    metrics = {name: (values[name].corpus if name in values else None) for name in METRIC_NAMES}
    for group, names in METRIC_GROUPS.items():
        if group not in options.metrics:
            unavailable.update({name: "not requested (--metrics)" for name in names})
    per_sample = _per_sample(prepared.pairs, values, options)
    bert = None
    if options.bertscore is not None:
        from artemis_cli.metrics.bertscore import bertscore

        if progress is not None:
            progress("computing BERTScore", 0, 1)
        result = bertscore([pair.pred for pair in prepared.pairs], [pair.refs for pair in prepared.pairs],
                           options.bertscore)  # the same filtered, keyed pairs as the COCO metrics
        bert = result.to_json()
        for row, p, r, f in zip(per_sample, result.precision, result.recall, result.f1):
            row.update({"BERTScore_P": p, "BERTScore_R": r, "BERTScore_F1": f})
    return ScoreReport(
        options=options, n_input=prepared.n_input, n_scored=len(prepared.pairs),
        n_dropped_length=prepared.n_dropped_length, n_dropped_duplicate=prepared.n_dropped_duplicate,
        metrics=metrics, unavailable=unavailable, skipped=prepared.skipped, ci=ci,
        per_sample=per_sample, java=java, bertscore=bert, n_truncated=prepared.n_truncated,
    )


def _nothing_to_score(n_input: int, n_dropped_length: int, n_skipped: int) -> str:
    if n_input == 0:
        return "no prediction records to score" + (f" ({n_skipped} bad record(s) skipped)" if n_skipped else "")
    return (f"nothing to score: the length filter dropped all {n_dropped_length} prediction(s) "
            f"(kept are {MIN_PRED_CHARS}-{MAX_PRED_CHARS} characters)")


def _run_metrics(pairs: list[Pair], options: ScoreOptions, progress: Optional[ProgressCallback]):
    from artemis_cli.metrics.bootstrap import bootstrap_ci
    from artemis_cli.metrics.java import java_on_path, resolve_java
    from artemis_cli.metrics.spice import SpiceFailed, locate_spice, run_spice

    groups = options.metrics
    steps = ["tokenizing captions", *(f"computing {g}" for g in groups)]
    steps += ["bootstrapping"] if options.bootstrap else []

    def step(description: str) -> None:
        if progress is not None:
            progress(description, steps.index(description), len(steps))

    coco.check_pycocoevalcap()
    java = resolve_java()
    spice_setup = locate_spice(java, options.corenlp_dir) if "spice" in groups else None
    gts = {index: list(pair.refs) for index, pair in enumerate(pairs)}
    res = {index: [pair.pred] for index, pair in enumerate(pairs)}
    values: dict[str, coco.MetricValues] = {}
    unavailable: dict[str, str] = {}
    ci = None
    meteor = None
    with java_on_path(java):
        try:
            meteor = coco.start_meteor() if "meteor" in groups else None  # its JVM loads meanwhile
            step("tokenizing captions")
            gts, res = coco.tokenize(gts), coco.tokenize(res)
            for group in groups:
                step(f"computing {group}")
                if group == "bleu":
                    values.update(coco.bleu(gts, res, with_resampling=options.bootstrap > 0))
                elif group == "meteor":
                    values["METEOR"] = meteor.score(gts, res, with_resampling=options.bootstrap > 0)
                elif group == "rouge":
                    values["ROUGE_L"] = coco.rouge(gts, res)
                elif group == "cider":
                    values["CIDEr"] = coco.cider(gts, res)
                elif spice_setup.reason is not None:
                    unavailable["SPICE"] = spice_setup.reason
                else:
                    try:
                        values["SPICE"] = run_spice(gts, res, spice_setup, java)
                    except SpiceFailed as exc:
                        unavailable["SPICE"] = str(exc)
            if options.bootstrap:
                step("bootstrapping")
                ci = bootstrap_ci(values, len(pairs), options.bootstrap, options.seed)
        finally:
            if meteor is not None:
                meteor.close()
    return values, unavailable, ci, java.describe()


def _per_sample(pairs: list[Pair], values: dict[str, coco.MetricValues], options: ScoreOptions) -> list[dict]:
    rows = []
    for index, pair in enumerate(pairs):
        row: dict[str, Any] = {
            options.id_field: pair.id, "location": pair.location,
            options.ref_field: pair.refs[0] if len(pair.refs) == 1 else list(pair.refs),
            options.pred_field: pair.pred,
        }
        for name in METRIC_NAMES:
            if name in values:
                row[name] = finite_or_none(float(values[name].per_sample[index]))
        rows.append(row)
    return rows


def score_file(path: str | os.PathLike, options: Optional[ScoreOptions] = None, *,
               per_sample_path: str | os.PathLike | None = None,
               progress: Optional[ProgressCallback] = None) -> ScoreReport:
    """Read a `.jsonl` / `.json` prediction file, `score` it, and write `per_sample_path` (JSON Lines)
    atomically when given. Malformed JSON lines count as bad records under ``options.skip_bad``."""
    from artemis_cli.common.jsonio import load_records

    options = options or ScoreOptions()
    path = Path(path)
    bad: list[tuple[int, str]] = []
    loaded = load_records(path, skip_bad=options.skip_bad, bad=bad)
    if not loaded and not bad:
        raise InputError(f"{path}: holds no prediction records (the file is empty)",
                         hint="pass the .jsonl that `artemis infer videorefbench` wrote")
    label = (lambda n: f"{path}[{n}]") if _is_json_list(path) else (lambda n: f"{path}:{n}")
    report = score([(label(n), record) for n, record in loaded], options, progress=progress)
    report.skipped = [message for _, message in bad] + report.skipped
    if per_sample_path is not None:
        write_per_sample(report, per_sample_path)
    return report


def score_protocols(path: str | os.PathLike, options: ScoreOptions, protocols: list[str], *,
                    per_sample_path: str | os.PathLike | None = None,
                    progress: Optional[ProgressCallback] = None) -> dict[str, ScoreReport]:
    """`score_file` under each caption protocol in `protocols` (side by side); per-sample rows of all of
    them go to one file, each with its ``protocol``."""
    reports = {name: score_file(path, options.for_protocol(name), progress=progress) for name in protocols}
    if per_sample_path is not None:
        if len(reports) == 1:
            write_per_sample(next(iter(reports.values())), per_sample_path)
        else:
            with atomic_open(per_sample_path, "w") as handle:
                for name, report in reports.items():
                    for row in report.per_sample:
                        handle.write(json.dumps({"protocol": name, **row}, ensure_ascii=False) + "\n")
    return reports


def _is_json_list(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8-sig", "replace").lstrip().startswith("[")


def write_per_sample(report: ScoreReport, path: str | os.PathLike) -> None:
    """One JSON line per scored record, in scoring order: its id, location, captions and values."""
    with atomic_open(path, "w") as handle:
        for row in report.per_sample:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
