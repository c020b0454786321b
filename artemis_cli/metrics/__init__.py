"""Caption metrics: pycocoevalcap under the VideoRefBench protocol (`score`, `score_file`)."""

from artemis_cli.metrics.score import ScoreOptions, ScoreReport, score, score_file

__all__ = ["ScoreOptions", "ScoreReport", "score", "score_file"]
