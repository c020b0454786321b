"""The published VideoRefBench scoring protocol: validate prediction records, key them by id,
drop too short/long predictions, and put the pairs in the order the published scorer used.

`PROTOCOLS` names the filters in circulation for HC-STVG: Artemis' (below) and PixelRefer's (every
record, predictions cut to 100 words), so `artemis score --protocol both` shows them side by side.

*Quirks* reproduced by default: a later record with the same id replaces an earlier one (keeping
the earlier one's position), and predictions of <= 5 or >= 300 characters are dropped. The pairs are
then sorted by id without its last four characters (the ``.mp4`` extension), a stable sort.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Iterable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, create_model

from artemis_cli.data.benchmarks import PREDICTIONS
from artemis_cli.errors import InputError

CAPTION = PREDICTIONS["caption"]  # the VideoRefBench prediction line `infer` writes

MIN_PRED_CHARS = 6  # the published script kept 5 < len(pred) < 300
MAX_PRED_CHARS = 299
SKIP_BAD_HINT = "pass --skip-bad to skip and count bad records"


@dataclass(frozen=True)
class CaptionProtocol:
    """How a peer turns a prediction file into caption pairs before pycocoevalcap."""

    name: str
    about: str
    length_filter: bool  # keep 5 < len(pred) < 300 characters
    keep_duplicates: bool  # every record, or the last one per id
    truncate_words: Optional[int] = None  # cut each prediction to its first N space-separated words


PROTOCOLS: dict[str, CaptionProtocol] = {p.name: p for p in (
    CaptionProtocol("artemis", "Artemis' published scorer: the last record per id, predictions of 6-299 characters",
                    length_filter=True, keep_duplicates=False),
    CaptionProtocol("pixelrefer", "PixelRefer / VideoRefer-VideoLLaMA3 (change2eval_format.py): every record, each "
                                  "prediction cut to its first 100 words, no length filter",
                    length_filter=False, keep_duplicates=True, truncate_words=100),
)}


@dataclass(frozen=True)
class Pair:
    """One prediction to score: its id, where it came from, its reference caption(s) and prediction."""

    id: Union[str, int]
    location: str
    refs: tuple[str, ...]
    pred: str


@dataclass
class PreparedPairs:
    pairs: list[Pair]
    n_input: int  # valid records read; == len(pairs) + n_dropped_length + n_dropped_duplicate
    n_dropped_length: int = 0
    n_dropped_duplicate: int = 0
    n_truncated: int = 0
    skipped: list[str] = field(default_factory=list)  # messages for bad records skipped with skip_bad


def record_model(id_field: str, ref_field: str, pred_field: str) -> type[BaseModel]:
    """A pydantic model reading the three configured fields (other keys are ignored)."""
    refs_type = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1)]]
    return create_model(
        "PredictionRecord",
        __config__=ConfigDict(extra="ignore"),
        id=(Union[StrictStr, StrictInt], Field(alias=id_field)),
        refs=(refs_type, Field(alias=ref_field)),
        pred=(StrictStr, Field(alias=pred_field)),
    )


def _problem(location: str, exc: ValidationError, aliases: dict[str, str]) -> str:
    parts = []
    for err in exc.errors():
        loc = err["loc"]
        name = aliases.get(str(loc[0]), str(loc[0])) if loc else ""
        if err["type"] == "missing":
            parts.append(f"no {name!r} field")
        elif err["type"] == "model_type":
            parts.append(f"expected a JSON object, got {type(err['input']).__name__}")
        else:
            parts.append(f"{name!r}: {err['msg']}")
    # A union reports one error per member; keep each message once, in order.
    return f"{location}: " + "; ".join(dict.fromkeys(parts))


def prepare_pairs(records: Iterable[tuple[str, Any]], *, id_field: str = CAPTION.roles["video"],
                  ref_field: str = CAPTION.roles["reference"], pred_field: str = CAPTION.roles["pred"],
                  keep_duplicates: bool = False, length_filter: bool = True, skip_bad: bool = False,
                  truncate_words: Optional[int] = None) -> PreparedPairs:
    """Validate ``(location, record)`` pairs and apply the protocol; returns the pairs in scoring order.

    `truncate_words` cuts each prediction to its first N words split on single spaces, as PixelRefer's
    ``' '.join(pred.split(' ')[:100])``. A bad record raises `InputError` naming its location, or with
    `skip_bad` is listed in `skipped`.
    """
    model = record_model(id_field, ref_field, pred_field)
    aliases = {"id": id_field, "refs": ref_field, "pred": pred_field}
    valid: list[Pair] = []
    skipped: list[str] = []
    for location, raw in records:
        try:
            record = model.model_validate(raw)
        except ValidationError as exc:
            message = _problem(location, exc, aliases)
            if not skip_bad:
                raise InputError(message, hint=SKIP_BAD_HINT) from None
            skipped.append(message)
            continue
        refs = (record.refs,) if isinstance(record.refs, str) else tuple(record.refs)
        valid.append(Pair(record.id, location, refs, record.pred))

    if keep_duplicates:
        unique = valid
    else:
        by_id: dict[Any, Pair] = {}
        for pair in valid:
            by_id[pair.id] = pair  # a dict keeps the first position, like the published script
        unique = list(by_id.values())
    kept = [p for p in unique if MIN_PRED_CHARS <= len(p.pred) <= MAX_PRED_CHARS] if length_filter else unique
    n_truncated = 0
    if truncate_words is not None:
        cut = []
        for pair in kept:
            words = pair.pred.split(" ")
            n_truncated += len(words) > truncate_words
            cut.append(replace(pair, pred=" ".join(words[:truncate_words])))
        kept = cut
    kept.sort(key=lambda p: str(p.id)[:-4])
    return PreparedPairs(pairs=kept, n_input=len(valid), n_dropped_length=len(unique) - len(kept),
                         n_dropped_duplicate=len(valid) - len(unique), n_truncated=n_truncated, skipped=skipped)
