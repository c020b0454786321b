"""BERTScore (`artemis score --bertscore`) against `bert_score.score()` called directly, and `--table`.

A tiny random BERT with its WordPiece tokenizer is written to a temporary folder (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.metrics.protocol import prepare_pairs
from artemis_cli.metrics.score import ScoreOptions, score
from artemis_cli.metrics.synthetic import make_prediction_records

bert_score = pytest.importorskip("bert_score")
pytestmark = pytest.mark.slow  # a model per test and the JVM tokenizer: several seconds each
runner = CliRunner()
RECORDS = make_prediction_records(24, seed=5)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("bertscore") / "tiny-bert"
    words = sorted({word for r in RECORDS for text in (r["pred"], r["groundtruth"]) for word in text.lower().split()})
    vocab_file = folder.parent / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words[:300]]) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), model_max_length=128)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


def kept_pairs(records):
    prepared = prepare_pairs(((f"record {i}", r) for i, r in enumerate(records)), id_field="video_name",
                             ref_field="groundtruth", pred_field="pred", keep_duplicates=False, length_filter=True,
                             skip_bad=False)
    return prepared.pairs


def options(model, **bert):
    from artemis_cli.metrics.bertscore import BertScoreOptions

    return ScoreOptions(metrics=["bleu"], bertscore=BertScoreOptions(model=str(model), device="cpu", **bert))


@pytest.mark.parametrize("layers,idf", [(2, False), (1, True)])
def test_values_equal_bert_score_called_directly(tiny_bert, layers, idf):
    report = score(RECORDS, options(tiny_bert, num_layers=layers, idf=idf))
    pairs = kept_pairs(RECORDS)  # the same length filter and last-record-per-id keying as the COCO metrics
    assert report.n_scored == len(pairs) < len(RECORDS)
    (p, r, f), expected_hash = bert_score.score([x.pred for x in pairs], [x.refs[0] for x in pairs],
                                                model_type=str(tiny_bert), num_layers=layers, idf=idf, device="cpu",
                                                return_hash=True)
    rows = report.per_sample
    assert [row["BERTScore_P"] for row in rows] == p.tolist()
    assert [row["BERTScore_R"] for row in rows] == r.tolist()
    assert [row["BERTScore_F1"] for row in rows] == f.tolist()
    assert report.bertscore["F1"] == pytest.approx(f.mean().item(), rel=1e-6)
    assert report.bertscore["hash"] == expected_hash
    assert f"_L{layers}_{'idf' if idf else 'no-idf'}_version={bert_score.__version__}" in expected_hash
    assert report.to_json()["bertscore"]["settings"]["num_layers"] == layers


def test_rescaling_with_a_baseline_file_and_several_references(tiny_bert, tmp_path):
    from artemis_cli.metrics.bertscore import BertScoreOptions, bertscore

    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.{i + 3},0.{i + 2},0.{i + 4}\n" for i in range(4)))
    candidates = ["a man walks on the street", "the woman opens a door"]
    references = [["a man runs on the road", "a person walks outside"], ["a woman closes the door"]]
    ours = bertscore(candidates, references, BertScoreOptions(model=str(tiny_bert), num_layers=2, baseline_path=baseline,
                                                             device="cpu"))
    (p, r, f), expected_hash = bert_score.score(candidates, references, model_type=str(tiny_bert), num_layers=2,
                                                lang="en", rescale_with_baseline=True, baseline_path=str(baseline),
                                                device="cpu", return_hash=True)
    assert ours.precision == p.tolist() and ours.f1 == f.tolist() and ours.hash == expected_hash
    assert expected_hash.endswith("-custom-rescaled")


def test_settings_errors_name_the_option(tiny_bert, tmp_path):
    from artemis_cli.errors import UsageError
    from artemis_cli.metrics.bertscore import BertScoreOptions, resolve_settings

    with pytest.raises(UsageError, match="no default layer") as caught:
        resolve_settings(BertScoreOptions(model=str(tiny_bert), device="cpu"))
    assert "--bertscore-layer" in caught.value.hint
    with pytest.raises(UsageError, match="ships no en baseline"):
        resolve_settings(BertScoreOptions(model=str(tiny_bert), num_layers=1, rescale=True, device="cpu"))
    default = resolve_settings(BertScoreOptions(device="cpu"))
    assert default["model_type"] == "roberta-large" and default["num_layers"] == 17 and not default["idf"]
    shipped = resolve_settings(BertScoreOptions(rescale=True, device="cpu"))
    assert shipped["rescale_with_baseline"] and shipped["baseline_path"] is None  # bert-score finds its own file


@pytest.fixture(scope="module")
def preds_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("preds") / "preds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def test_cli_bertscore_and_the_paper_table_in_json(tiny_bert, preds_file):
    result = runner.invoke(app, ["score", str(preds_file), "--metrics", "bleu,rouge,cider", "--json", "--table",
                                 "--bertscore", "--bertscore-model", str(tiny_bert), "--bertscore-layer", "2",
                                 "--bertscore-device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    direct = score(RECORDS, options(tiny_bert, num_layers=2))
    assert out["bertscore"]["F1"] == direct.bertscore["F1"] and out["bertscore"]["hash"] == direct.bertscore["hash"]
    table = out["paper_table"]
    assert table["columns"] == ["BERTScore", "BLEU@4", "METEOR", "ROUGE_L", "CIDEr", "SPICE"]
    ours = table["rows"]["this run"]
    assert ours["BERTScore"] == round(direct.bertscore["F1"] * 100, 1)
    assert ours["BLEU@4"] == round(out["metrics"]["Bleu_4"] * 100, 1) and ours["METEOR"] is None
    assert table["rows"]["Artemis-7B (paper)"] == {"BERTScore": None, "BLEU@4": 15.5, "METEOR": 18.0, "ROUGE_L": 40.8,
                                                   "CIDEr": 53.2, "SPICE": 25.4}
    assert table["bertscore_hash"] == out["bertscore"]["hash"]


def test_cli_table_text_and_bertscore_options_need_bertscore(preds_file):
    result = runner.invoke(app, ["score", str(preds_file), "--metrics", "bleu,rouge,cider", "--table"])
    assert result.exit_code == 0, result.output
    assert "VideoRefBench in the paper's columns (x100)" in result.stdout
    assert "Artemis-7B (paper)" in result.stdout and "53.2" in result.stdout and "25.4" in result.stdout
    refused = runner.invoke(app, ["score", str(preds_file), "--bertscore-layer", "3"])
    assert refused.exit_code == 2
    assert "--bertscore-layer given without --bertscore" in refused.output
