"""Strict judge-reply parsing: JSON, fences, float scores, Python-dict replies; bad replies raise."""

from __future__ import annotations

import pytest

from artemis_cli.judge.parsing import ReplyError, parse_reply


@pytest.mark.parametrize("text, task, expected", [
    ('{"pred": "yes", "score": 4}', "qa", {"pred": "yes", "score": 4}),
    ('  {"pred": "NO", "score": 0}\n', "qa", {"pred": "no", "score": 0}),
    ('{"pred": "yes", "score": 4.8}', "qa", {"pred": "yes", "score": 4.8}),
    ('```json\n{"score": 3}\n```', "detail", {"score": 3}),
    ('```\n{"score": 2.5}```', "temporal", {"score": 2.5}),
    ('{"score": 5, "reason": "complete"}', "correctness", {"score": 5}),
    ("{'pred': 'yes', 'score': 4}", "qa", {"pred": "yes", "score": 4}),
    ("{'score': 1.5}", "consistency", {"score": 1.5}),
    ('{"pred": "yes", "score": 0.0}', "qa", {"pred": "yes", "score": 0.0}),
])
def test_valid_replies(text, task, expected):
    verdict = parse_reply(text, task)
    assert verdict == expected
    assert type(verdict["score"]) is type(expected["score"])  # 4.8 stays a float, 4 an int


@pytest.mark.parametrize("text, task, message", [
    (None, "qa", "empty reply"),
    ("   ", "qa", "empty reply"),
    ("yes, score 4", "qa", "not JSON"),
    ('{"pred": "yes", "score": 7}', "qa", "outside 0-5"),
    ('{"score": -1}', "detail", "outside 0-5"),
    ('{"score": "4"}', "detail", "must be a number"),
    ('{"score": true}', "detail", "must be a number"),
    ('{"score": NaN}', "detail", "outside 0-5"),
    ('{"pred": "maybe", "score": 3}', "qa", "'pred' must be"),
    ('{"score": 3}', "qa", "'pred' must be"),
    ('{"pred": "yes"}', "qa", "no 'score'"),
    ("[4]", "detail", "expected a JSON object"),
    ("{'score': __import__('os')}", "detail", "not JSON"),
    ("```json\n{\"score\": 9}\n```", "context", "outside 0-5"),
])
def test_unusable_replies_raise(text, task, message):
    with pytest.raises(ReplyError, match=message.replace("(", r"\(")):
        parse_reply(text, task)
