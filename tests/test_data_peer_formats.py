"""The peers' record formats (VideoRefer-Bench-D/Q, PLM-VideoBench RCap items and metadata): COCO RLE masks ->
boxes, `data verify-layout` on each format, and the readers' samples."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.data.benchmarks import BENCHMARKS, mcq_question
from artemis_cli.data.masks import encode_box_mask, rle_box
from artemis_cli.data.records import recognise_format
from artemis_cli.errors import InputError
from peer_fixtures import square_box, write_peer_data


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    return write_peer_data(tmp_path_factory.mktemp("peers"))


def test_rle_masks_become_tight_boxes():
    assert rle_box(encode_box_mask([10, 20, 30, 50], 60, 80)) == [10.0, 20.0, 30.0, 50.0]
    # uncompressed (column-major) runs: 5 off, 2 on (column 1, rows 1-2), 9 off in a 4x4 mask
    assert rle_box({"size": [4, 4], "counts": [5, 2, 9]}) == [1.0, 1.0, 2.0, 3.0]
    assert rle_box(None) == [] and rle_box({"size": [4, 4], "counts": [16]}) == []  # absent / empty
    with pytest.raises(InputError, match="runs sum to 15"):
        rle_box({"size": [4, 4], "counts": [5, 2, 8]}, "annotation[0].3.segmentation")
    with pytest.raises(InputError, match="polygons are not supported"):
        rle_box([[1, 2, 3, 4, 5, 6]])
    with pytest.raises(InputError, match="size"):
        rle_box({"size": [0, 4], "counts": "0"})


def test_each_published_format_is_recognised(peers):
    assert recognise_format(json.loads(peers.bench_d.read_text())[0]) == "videorefer_d"
    assert recognise_format(json.loads(peers.bench_q.read_text())[0]) == "videorefer_q"
    assert recognise_format(json.loads(peers.rcap.read_text().splitlines()[0])) == "plm_rcap"
    assert recognise_format(json.loads(peers.metadata.read_text().splitlines()[0])) == "plm_metadata"


def test_verify_layout_checks_each_format_with_one_line_errors(peers, tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "d.json").write_text(peers.bench_d.read_text())
    questions = json.loads(peers.bench_q.read_text())
    questions[0]["Answer"] = "(Z) nope"
    questions[1]["Question"] = "Is <object1><region> near?"  # two objects annotated, one region named
    questions[0]["annotation"][0]["2"]["segmentation"]["counts"] = "~~~"
    (folder / "q.json").write_text(json.dumps(questions))
    items = [json.loads(line) for line in peers.rcap.read_text().splitlines()]
    items[1]["end_frame"] = 40
    del items[0]["caption"]
    (folder / "rcap_test.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))  # as published
    metadata = [json.loads(line) for line in peers.metadata.read_text().splitlines()]
    metadata[0]["bbox"]["3"] = [5, 5, 2, 2]
    (folder / "metadata.json").write_text(json.dumps(metadata))  # a JSON list works too
    result = CliRunner().invoke(app, ["data", "verify-layout", str(tmp_path), "--annotations", str(folder),
                                      "--stage", "none", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    found = {(p["path"].rsplit("/", 1)[-1], p["record"], p["field"]): p["message"] for p in report["problems"]}
    assert found == {
        ("q.json", 0, "Answer"): "letter Z is not among the options (A, B)",
        ("q.json", 0, "annotation[0].2.segmentation.counts"):
            "not a compressed COCO RLE string (characters outside '0'..'o')",
        ("q.json", 1, "Question"): "1 <region> mark(s) but 2 annotated object(s)",
        ("rcap_test.jsonl", 0, "caption"): "missing required field (plm_rcap record)",
        ("rcap_test.jsonl", 1, "end_frame"): "40 is not within the video's 12 frame(s)",
        ("metadata.json", 0, "bbox.3"): "box [5, 5, 2, 2] needs x1 < x2 and y1 < y2",
    }
    assert report["counts"]["records_by_kind"] == {"plm_metadata": 2, "plm_rcap": 2, "videorefer_d": 2,
                                                   "videorefer_q": 2}


def test_mcq_question_marks_the_first_object_as_the_region():
    text, regions = mcq_question("Is <object1><region> left of <object3><region>?", ["(A) yes", "(B) no"])
    assert regions == 2
    assert text == "Is <bbox> left of object 3? (A) yes (B) no. Answer with the option's letter from the given " \
                   "choices directly."


def test_readers_turn_masks_into_tracks(peers):
    spec = BENCHMARKS["videorefer-d"]
    first, _ = spec.read(benchmark=spec, annotations=peers.bench_d, videos=peers.videos, features=peers.features)
    record = first.referring
    assert record.frame_id == [0, 2, 4, 6, 8, 10] and record.track_list[-1] == []  # frame 10's mask is null
    assert record.track_list[1] == [float(v) for v in square_box(2)]
    assert (record.key_frame_id, record.key_frame_box) == (4, [float(v) for v in square_box(4)])
    assert first.video == peers.videos / "clip_a.mp4" and first.root / record.clip_path == peers.features / "clip_a.npy"
    spec = BENCHMARKS["plm-rcap"]
    moving, still = spec.read(benchmark=spec, annotations=peers.rcap, metadata=peers.metadata, videos=peers.videos,
                              features=peers.features)
    assert moving.referring.frame_id == list(range(2, 10)) and moving.referring.track_list[0] == square_box(2)
    assert still.referring.key_frame_id == 3 and still.referring.track_list[:3] == [[], [], []]
    assert moving.id == "101" and still.fields == {"video": "sav_000001.mp4", "caption": "A second object stays still."}


def test_reader_problems_name_the_record(peers, tmp_path):
    items = [json.loads(line) for line in peers.rcap.read_text().splitlines()]
    items[0]["masklet_id"] = 7
    (tmp_path / "rcap.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    spec = BENCHMARKS["plm-rcap"]
    samples = spec.read(benchmark=spec, annotations=tmp_path / "rcap.jsonl", metadata=peers.metadata,
                        videos=peers.videos, features=peers.features)
    assert "rcap.jsonl:1: no metadata line for video 'sav_000001.mp4', masklet_id 7" in samples[0].problem
    assert samples[1].problem is None
    duplicate = json.loads(peers.bench_d.read_text()) * 2
    (tmp_path / "d.json").write_text(json.dumps(duplicate))
    spec = BENCHMARKS["videorefer-d"]
    with pytest.raises(InputError, match="2 duplicate id"):
        spec.read(benchmark=spec, annotations=tmp_path / "d.json", videos=peers.videos, features=peers.features)
