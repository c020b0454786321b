"""`artemis score` under the peers' protocols: HC-STVG with Artemis' and PixelRefer's filters side by side, and
VideoRefer-Bench-Q's letter regex (`metrics.mcq`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import InputError
from artemis_cli.metrics.mcq import predicted_letter, score_mcq
from artemis_cli.metrics.protocol import prepare_pairs
from artemis_cli.metrics.score import ScoreOptions, score

LONG = " ".join(f"word{i}" for i in range(130))


def caption_lines() -> list[dict]:
    return [
        {"video_name": "a.mp4", "groundtruth": "a man walks to the door", "pred": "a man walks to the door slowly"},
        {"video_name": "b.mp4", "groundtruth": "a woman sits on a chair", "pred": "sits"},  # <= 5 characters
        {"video_name": "c.mp4", "groundtruth": "a dog runs after a ball", "pred": "a dog chases a ball " + LONG},
        {"video_name": "c.mp4", "groundtruth": "a dog runs after a ball", "pred": "the dog runs after the ball"},
        {"video_name": "d.mp4", "groundtruth": "a child jumps into water", "pred": "a child jumps in the pool"},
    ]


def invoke(args: list):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_pixelrefer_truncates_to_100_words_and_keeps_every_record():
    located = [(f"r{i}", line) for i, line in enumerate(caption_lines())]
    artemis = prepare_pairs(located)
    pixelrefer = prepare_pairs(located, keep_duplicates=True, length_filter=False, truncate_words=100)
    assert (artemis.n_dropped_length, artemis.n_dropped_duplicate, len(artemis.pairs)) == (1, 1, 3)
    assert len(pixelrefer.pairs) == 5 and pixelrefer.n_truncated == 1
    cut = next(p.pred for p in pixelrefer.pairs if p.pred.startswith("a dog chases"))
    assert len(cut.split(" ")) == 100 and cut.endswith("word94")  # 5 words + word0..word94
    assert "sits" in {p.pred for p in pixelrefer.pairs}


def test_score_both_protocols_side_by_side(tmp_path):
    preds = tmp_path / "videorefbench.jsonl"
    preds.write_text("".join(json.dumps(line) + "\n" for line in caption_lines()))
    result = invoke(["score", preds, "--protocol", "both", "--metrics", "bleu,rouge,cider", "--json",
                     "--per-sample", tmp_path / "rows.jsonl"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document["protocols"]) == {"artemis", "pixelrefer"}
    artemis, pixelrefer = document["protocols"]["artemis"], document["protocols"]["pixelrefer"]
    assert document["n_scored"] == artemis["n_scored"] == 3 and pixelrefer["n_scored"] == 5
    assert pixelrefer["n_truncated"] == 1 and pixelrefer["protocol"] == "pixelrefer"
    assert artemis["metrics"]["CIDEr"] != pixelrefer["metrics"]["CIDEr"]
    # PixelRefer's numbers are plain pycocoevalcap on its own pairs: every record, predictions cut to 100 words.
    cut = [{**line, "pred": " ".join(line["pred"].split(" ")[:100])} for line in caption_lines()]
    own = score(cut, ScoreOptions(metrics=["bleu", "rouge", "cider"], keep_duplicates=True, length_filter=False))
    assert pixelrefer["metrics"]["CIDEr"] == pytest.approx(own.metrics["CIDEr"])
    assert pixelrefer["metrics"]["Bleu_4"] == pytest.approx(own.metrics["Bleu_4"])
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["protocol"] for r in rows].count("pixelrefer") == 5 and len(rows) == 8
    table = invoke(["score", preds, "--protocol", "both", "--metrics", "bleu"])
    assert "under each protocol" in table.stdout and "pixelrefer" in table.stdout and "cut to 100 words" in table.stdout
    bad = invoke(["score", preds, "--protocol", "pixelrefer", "--no-length-filter"])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1
    assert invoke(["score", preds, "--protocol", "dam"]).exit_code == 2


def test_published_letter_rules():
    assert predicted_letter("(B) a red car") == ("B", "paren")
    assert predicted_letter("The answer is C) sitting") == ("C", "close")
    assert predicted_letter("a.") == ("a", "first_char")  # the published fallback, compared case-insensitively
    assert predicted_letter("...") == (None, "empty")


def test_mcq_micro_average_per_type_and_counted_failures():
    lines = [("l1", {"id": "1", "answer": "(A) x", "type": "Basic", "pred": "(A)", "n_regions": 1}),
             ("l2", {"id": "2", "answer": "(B) y", "type": "Basic", "pred": "b", "n_regions": 2}),
             ("l3", {"id": "3", "answer": "(C) z", "type": "Future", "pred": "", "n_regions": 1}),
             ("l4", {"id": "4", "answer": "(D) w", "type": "Future", "pred": "D) w"})]
    report = score_mcq(lines, expected_ids=["1", "2", "3", "4", "5"])
    assert (report.n_questions, report.n_correct, report.n_empty, report.n_first_char) == (5, 3, 1, 1)
    assert report.accuracy == pytest.approx(3 / 5) and report.n_missing_predictions == 1
    assert report.per_type["Basic"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    assert report.per_type["Future"]["correct"] == 1 and report.n_multi_region == 1
    with pytest.raises(InputError, match="l9: answer: no option letter"):
        score_mcq([("l9", {"id": "9", "answer": "yes", "type": "Basic", "pred": "(A)"})])
    with pytest.raises(InputError, match="l8: pred"):
        score_mcq([("l8", {"id": "8", "answer": "(A) x", "type": "Basic"})])
