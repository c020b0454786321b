"""BERTScore through the `bert-score` package (the field's implementation; nothing is reimplemented here).

The paper's VideoRefBench table has a BERTScore column whose settings are not published, so a number
is only meaningful next to its protocol: every result carries the settings hash `bert_score.score`
reports (model, layer, idf, rescaling, bert-score and transformers versions). Defaults are bert-score's
English ones: `roberta-large`, layer 17, no idf, no rescaling. A model may be a hub id or a local folder;
a local folder needs its layer given unless its folder name is a model bert-score knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.devices import DeviceName
from artemis_cli.errors import UsageError

DEFAULT_MODEL = "roberta-large"
LANG = "en"


class BertScoreOptions(BaseModel):
    """How to compute BERTScore (`bert_score.score` arguments)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, min_length=1)  # hub id or local folder
    num_layers: Optional[int] = Field(None, ge=0)  # None: bert-score's default for the model (17 for roberta-large)
    idf: bool = False  # idf weights from the scored references, as bert-score computes them
    rescale: bool = False  # rescale with the baseline file bert-score ships for the model
    baseline_path: Optional[Path] = None  # another baseline file (implies rescale)
    batch_size: int = Field(64, ge=1)
    device: DeviceName = "auto"


@dataclass
class BertScoreResult:
    """Per-record precision / recall / F1 (raw, as bert-score returns them), their means and the protocol."""

    precision: list[float]
    recall: list[float]
    f1: list[float]
    hash: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, float]:
        return {name: sum(values) / len(values) for name, values in
                (("P", self.precision), ("R", self.recall), ("F1", self.f1))}

    def to_json(self) -> dict[str, Any]:
        return {**self.means, "hash": self.hash, "settings": dict(self.settings)}


def _known_name(model: str) -> Optional[str]:
    """The bert-score model name of a hub id, or of a local folder named like one."""
    from bert_score.utils import model2layers

    if model in model2layers:
        return model
    name = Path(model).name
    return name if Path(model).is_dir() and name in model2layers else None


def resolve_settings(options: BertScoreOptions) -> dict[str, Any]:
    """The `bert_score.score` keyword arguments, checked: layer, baseline file, device."""
    import bert_score
    from bert_score.utils import model2layers

    from artemis_cli.common.devices import resolve_device

    known = _known_name(options.model)
    num_layers = options.num_layers
    if num_layers is None:
        if known is None:
            raise UsageError(f"--bertscore-model {options.model}: bert-score has no default layer for it",
                             hint="pass --bertscore-layer N (roberta-large uses 17)")
        num_layers = model2layers[known]
    rescale = options.rescale or options.baseline_path is not None
    baseline = None
    if options.baseline_path is not None:
        baseline = Path(options.baseline_path)
        if not baseline.is_file():
            raise UsageError(f"--bertscore-baseline {baseline}: no such file")
    elif rescale:
        shipped = Path(bert_score.__file__).parent / "rescale_baseline" / LANG / f"{known or Path(options.model).name}.tsv"
        if not shipped.is_file():
            raise UsageError(f"--bertscore-rescale: bert-score ships no {LANG} baseline for {options.model}",
                             hint="pass --bertscore-baseline FILE (a baseline .tsv for this model and language)")
        if known is None or known != options.model:  # a local folder: bert-score would not find the file itself
            baseline = shipped
    return {"model_type": str(options.model), "num_layers": num_layers, "idf": options.idf,
            "rescale_with_baseline": rescale, "baseline_path": None if baseline is None else str(baseline),
            "batch_size": options.batch_size, "device": resolve_device(options.device, what="--bertscore-device"),
            "lang": LANG}


def bertscore(candidates: Sequence[str], references: Sequence[Sequence[str]],
              options: Optional[BertScoreOptions] = None) -> BertScoreResult:
    """`bert_score.score` on the pairs (several references: the best one, as bert-score does)."""
    try:
        import bert_score
    except ImportError:
        raise UsageError("BERTScore needs the bert-score package", hint="pip install 'artemis[score]'") from None
    options = options or BertScoreOptions()
    settings = resolve_settings(options)
    refs: list[Any] = [list(group) for group in references]
    if all(len(group) == 1 for group in refs):
        refs = [group[0] for group in refs]
    try:
        (precision, recall, f1), reported_hash = bert_score.score(list(candidates), refs, return_hash=True,
                                                                   verbose=False, **settings)
    except OSError as exc:  # a hub id offline, or a folder without model files
        raise UsageError(f"--bertscore-model {options.model}: cannot load ({str(exc).splitlines()[0]})",
                         hint="pass a local model folder with --bertscore-model (and --bertscore-layer)") from None
    recorded = {key: value for key, value in settings.items() if key not in ("device", "batch_size")}
    recorded["bert_score_version"] = bert_score.__version__
    return BertScoreResult(precision=[float(v) for v in precision], recall=[float(v) for v in recall],
                           f1=[float(v) for v in f1], hash=reported_hash, settings=recorded)
