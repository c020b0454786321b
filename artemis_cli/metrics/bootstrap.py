"""Percentile bootstrap confidence intervals over records, seeded and chunked to bound memory."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from artemis_cli.metrics.coco import MetricValues

CHUNK = 256  # resamples per weight matrix: [256, n] float64


def resample_weights(n: int, resamples: int, seed: int, chunk: int = CHUNK):
    """Yield weight matrices [b, n]: how often each record is drawn in each resample (rows sum to n)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, chunk):
        draws = rng.integers(0, n, size=(min(chunk, resamples - start), n))  # [b, n] record indices
        yield np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)


def bootstrap_ci(values: Mapping[str, MetricValues], n: int, resamples: int, seed: int,
                 level: float = 0.95) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """The `level` percentile interval of each metric's corpus value over `resamples` resamples.

    Every metric sees the same resamples. A NaN value (SPICE on a record it could not parse) gives
    ``(None, None)``.
    """
    draws: dict[str, list[np.ndarray]] = {name: [] for name, v in values.items() if v.resample is not None}
    for weights in resample_weights(n, resamples, seed):
        for name in draws:
            draws[name].append(values[name].resample(weights))
    tail = (1.0 - level) / 2 * 100
    intervals = {}
    for name, parts in draws.items():
        samples = np.concatenate(parts)
        if np.isnan(samples).any():
            intervals[name] = (None, None)
        else:
            low, high = np.percentile(samples, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals
