"""`artemis score`: COCO caption metrics for a VideoRefBench prediction file (Artemis' and PixelRefer's filters),
and multiple-choice accuracy for VideoRefer-Bench-Q."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import JsonFlag, Seed, SkipBad
from artemis_cli.data.benchmarks import PREDICTIONS
from artemis_cli.metrics.protocol import PROTOCOLS

ALL_METRICS = "bleu,meteor,rouge,cider,spice"
CAPTION = PREDICTIONS["caption"]  # the VideoRefBench prediction line `infer` writes
PROTOCOL_HELP = "; ".join(f"{name} ({spec.about})" for name, spec in PROTOCOLS.items())


def score_cmd(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", exists=True, dir_okay=False, readable=True,
                                                help="Prediction file: .jsonl, or a .json list, of {video_name, groundtruth, pred}; or VideoRefer-Bench-Q answers {id, options, answer, type, pred}.")],
    json_out: JsonFlag = False,
    per_sample: Annotated[Optional[Path], typer.Option("--per-sample", dir_okay=False, metavar="FILE", help="Write one JSON line per scored record with its values.")] = None,
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated subset of bleu,meteor,rouge,cider,spice.")] = ALL_METRICS,
    no_length_filter: Annotated[bool, typer.Option("--no-length-filter", help="Keep every prediction (the paper drops those of <= 5 or >= 300 characters).")] = False,
    keep_duplicates: Annotated[bool, typer.Option("--keep-duplicates", help="Score every record (the paper keeps the last record per id).")] = False,
    ref_field: Annotated[str, typer.Option("--ref-field", help="Field holding the reference caption (or a list of them).")] = CAPTION.roles["reference"],
    pred_field: Annotated[str, typer.Option("--pred-field", help="Field holding the predicted caption.")] = CAPTION.roles["pred"],
    id_field: Annotated[str, typer.Option("--id-field", help="Field holding the record id.")] = CAPTION.roles["video"],
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, metavar="N", help="Add 95% bootstrap confidence intervals from N resamples.")] = 0,
    seed: Seed = 0,
    skip_bad: SkipBad = False,
    corenlp_dir: Annotated[Optional[Path], typer.Option("--corenlp-dir", file_okay=False, help="Folder with stanford-corenlp-3.6.0.jar and -models.jar for SPICE (default: $ARTEMIS_CORENLP_DIR, then pycocoevalcap's lib folder).")] = None,
    bertscore: Annotated[bool, typer.Option("--bertscore", help="Add BERTScore (the bert-score package: P, R, F1 per record and mean, with its settings hash) on the same pairs.")] = False,
    bertscore_model: Annotated[Optional[str], typer.Option("--bertscore-model", metavar="ID_OR_DIR", help="BERTScore model: hub id or local folder (default roberta-large, bert-score's English default).")] = None,
    bertscore_layer: Annotated[Optional[int], typer.Option("--bertscore-layer", min=0, metavar="N", help="Layer whose embeddings are compared (default: bert-score's for the model, 17 for roberta-large).")] = None,
    bertscore_idf: Annotated[bool, typer.Option("--bertscore-idf", help="Weight tokens by idf computed on the scored references.")] = False,
    bertscore_rescale: Annotated[bool, typer.Option("--bertscore-rescale", help="Rescale with the baseline file bert-score ships for the model.")] = False,
    bertscore_baseline: Annotated[Optional[Path], typer.Option("--bertscore-baseline", dir_okay=False, metavar="FILE", help="Rescale with this baseline .tsv instead.")] = None,
    bertscore_batch_size: Annotated[Optional[int], typer.Option("--bertscore-batch-size", min=1, metavar="N", help="BERTScore batch size (default 64).")] = None,
    bertscore_device: Annotated[Optional[str], typer.Option("--bertscore-device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N for the BERTScore model (default auto).")] = None,
    table: Annotated[bool, typer.Option("--table", help="Also print the paper's VideoRefBench columns (BERTScore, BLEU@4, METEOR, ROUGE_L, CIDEr, SPICE; x100) beside the published Artemis-7B row; --json adds it as paper_table.")] = False,
    protocol: Annotated[str, typer.Option("--protocol", help="Whose caption filter: " + PROTOCOL_HELP + "; or both, side by side (--json: the first one's keys plus 'protocols').")] = "artemis",
) -> None:
    """Score predictions: captions with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr, SPICE) under the VideoRefBench
    protocol (or PixelRefer's, or both); VideoRefer-Bench-Q answers (lines with options, answer, type, pred) by the
    published letter regex, micro average and per type.

    Example: artemis score preds/videorefbench.jsonl --protocol both --per-sample preds/videorefbench.scores.jsonl"""
    from pydantic import ValidationError

    from artemis_cli.common.paths import check_output
    from artemis_cli.errors import UsageError
    from artemis_cli.metrics.mcq import is_mcq_predictions

    if per_sample is not None:
        check_output(per_sample, kind="file", option="--per-sample", inputs={"PREDICTIONS": predictions})
    if protocol not in (*PROTOCOLS, "both"):
        raise UsageError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)} or both")
    if is_mcq_predictions(predictions):
        caption_only = {"--per-sample": per_sample, "--bertscore": bertscore, "--table": table,
                        "--protocol": protocol != "artemis", "--bootstrap": bootstrap}
        given = [flag for flag, value in caption_only.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)}: caption options, but {predictions} holds multiple-choice answers")
        _score_mcq(predictions, json_out)
        return

    from artemis_cli.common.config import format_validation_error
    from artemis_cli.common.console import make_progress, print_json, stderr, stdout
    from artemis_cli.errors import ConfigError
    from artemis_cli.cli.score_report import print_report
    from artemis_cli.metrics.score import ScoreOptions, score_protocols

    protocols = list(PROTOCOLS) if protocol == "both" else [protocol]
    if protocols == ["pixelrefer"] and (no_length_filter or keep_duplicates):
        raise UsageError("--no-length-filter / --keep-duplicates switch Artemis' protocol; pixelrefer keeps every "
                         "record and has no length filter already")
    try:
        options = ScoreOptions(
            metrics=[m.strip() for m in metrics.split(",") if m.strip()], length_filter=not no_length_filter,
            keep_duplicates=keep_duplicates, id_field=id_field, ref_field=ref_field, pred_field=pred_field,
            bootstrap=bootstrap, seed=seed, skip_bad=skip_bad, corenlp_dir=corenlp_dir,
            bertscore=bertscore_options(bertscore, model=bertscore_model, num_layers=bertscore_layer, idf=bertscore_idf,
                                        rescale=bertscore_rescale, baseline_path=bertscore_baseline,
                                        batch_size=bertscore_batch_size, device=bertscore_device),
        )
    except ValidationError as exc:
        raise ConfigError("score options", format_validation_error(exc)) from None
    with make_progress(transient=True) as bar:
        task = bar.add_task("scoring", total=None)

        def on_step(description: str, index: int, total: int) -> None:
            bar.update(task, description=description, completed=index, total=total)

        reports = score_protocols(predictions, options, protocols, per_sample_path=per_sample, progress=on_step)
    from artemis_cli.cli.score_report import print_side_by_side
    from artemis_cli.cli.score_table import build_paper_table, print_bertscore
    from artemis_cli.metrics.paper import paper_table_json

    report = reports[protocols[0]]
    if json_out:
        document = report.to_json()
        if table:
            document["paper_table"] = paper_table_json(report)
        if len(reports) > 1:
            document["protocols"] = {name: {"protocol": name, **r.to_json()} for name, r in reports.items()}
        print_json(document)
    console = stderr if json_out else stdout
    if len(reports) > 1:
        print_side_by_side(reports, console)
    else:
        print_report(report, console)
    print_bertscore(report, console)
    if table:
        console.print(build_paper_table(report))
    if per_sample is not None:
        stderr.print(f"per-record values: {per_sample}")


def _score_mcq(predictions: Path, json_out: bool) -> None:
    """Multiple-choice predictions (VideoRefer-Bench-Q): accuracy by the published letter regex."""
    from artemis_cli.cli.score_report import print_mcq
    from artemis_cli.common.console import print_json, stderr, stdout
    from artemis_cli.metrics.mcq import score_mcq_file

    report = score_mcq_file(predictions)
    if json_out:
        print_json(report.to_json())
    print_mcq(report, stderr if json_out else stdout)


def bertscore_options(enabled: bool, **given):
    """`BertScoreOptions` from the --bertscore-* options (None without --bertscore; an option without it
    is a usage error, not silently ignored)."""
    from artemis_cli.errors import UsageError
    from artemis_cli.metrics.bertscore import BertScoreOptions

    given = {key: value for key, value in given.items() if value not in (None, False)}
    if not enabled:
        if given:
            names = ", ".join("--bertscore-" + ("layer" if key == "num_layers" else "baseline" if key == "baseline_path"
                                                else key.replace("_", "-")) for key in given)
            raise UsageError(f"{names} given without --bertscore", hint="add --bertscore to compute BERTScore")
        return None
    return BertScoreOptions(**given)
