"""pycocoevalcap, run as the COCO caption toolkit runs it: PTB tokenizer, then BLEU-1..4, METEOR,
ROUGE-L and CIDEr on the tokenized captions. The metric values come from pycocoevalcap itself.

Beyond the toolkit this module keeps what a bootstrap needs: each metric's corpus value as a
function of per-record weights (`MetricValues.resample`). For ROUGE-L and CIDEr the corpus value is
the mean of the per-record values; BLEU is recomputed from summed n-gram statistics; METEOR's
summed statistics are handed back to its own Java process to aggregate.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from artemis_cli.errors import ArtemisError

Captions = dict[int, list[str]]  # pair index -> captions (one prediction, or the references)
BLEU_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
# Java's PTB lexer also ends a line at these; pycocoevalcap only replaces "\n", so one of them in a
# caption shifts every later caption onto the wrong record. They become spaces, as "\n" does.
_JAVA_LINE_BREAKS = re.compile("[\r\x0b\x0c\u2028\u2029]")


@dataclass
class MetricValues:
    """One metric: the corpus value, per-record values, and the corpus value under record weights."""

    corpus: float
    per_sample: np.ndarray  # [n]
    resample: Optional[Callable[[np.ndarray], np.ndarray]] = None  # weights [B, n] -> corpus values [B]


def mean_resampler(per_sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    values = np.asarray(per_sample, dtype=np.float64)
    return lambda weights: weights @ values / values.shape[0]


@contextlib.contextmanager
def _stderr_captured(lines: list[str]) -> Iterator[None]:
    """Send fd 2 (where the tokenizer's JVM writes its chatter) to a temp file; its lines go in `lines`."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines.extend(log.read().decode("utf-8", "replace").splitlines())


def check_pycocoevalcap() -> None:
    """pycocoevalcap must be importable, and its tokenizer writes a temp file beside its jar."""
    try:
        from pycocoevalcap.tokenizer import ptbtokenizer
    except ImportError:
        raise ArtemisError("pycocoevalcap is not installed", hint="pip install 'artemis[score]'") from None
    folder = Path(ptbtokenizer.__file__).parent
    if not os.access(folder, os.W_OK):
        raise ArtemisError(f"pycocoevalcap's tokenizer folder {folder} is not writable "
                           "(its PTB tokenizer writes a temp file there)",
                           hint="install pycocoevalcap in a virtual environment you can write to")


def tokenize(captions: Captions) -> Captions:
    """pycocoevalcap's PTB tokenizer (lower-cased, punctuation removed), one JVM for all captions."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    wrapped = {key: [{"caption": _JAVA_LINE_BREAKS.sub(" ", text)} for text in texts]
               for key, texts in captions.items()}
    java_log: list[str] = []
    with _stderr_captured(java_log):
        tokenized = PTBTokenizer().tokenize(wrapped)
    if tokenized.keys() != captions.keys() or any(len(tokenized[k]) != len(v) for k, v in captions.items()):
        detail = java_log[-1] if java_log else "no output"
        raise ArtemisError(f"the PTB tokenizer returned {sum(map(len, tokenized.values()))} captions for "
                           f"{sum(map(len, captions.values()))}: {detail}")
    return tokenized


def bleu(gts: Captions, res: Captions, with_resampling: bool) -> dict[str, MetricValues]:
    """pycocoevalcap BLEU-1..4 ("closest" reference length, as the toolkit uses)."""
    from pycocoevalcap.bleu.bleu import Bleu

    corpus, per_sample = Bleu(4).compute_score(gts, res, verbose=0)
    resamplers = [None] * 4
    if with_resampling:
        stats = _bleu_statistics(gts, res)  # [n, 10]
        resamplers = [(lambda weights, k=k: bleu_from_statistics(weights @ stats)[:, k]) for k in range(4)]
    return {name: MetricValues(float(corpus[k]), np.asarray(per_sample[k], dtype=np.float64), resamplers[k])
            for k, name in enumerate(BLEU_NAMES)}


def _bleu_statistics(gts: Captions, res: Captions) -> np.ndarray:
    """Per record [test length, closest reference length, guesses 1..4, matches 1..4], via pycocoevalcap."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    rows = []
    for key in gts:
        cooked = cook_test(res[key][0], cook_refs(gts[key]))
        test_len = cooked["testlen"]
        closest = min((abs(length - test_len), length) for length in cooked["reflen"])[1]
        rows.append([test_len, closest, *cooked["guess"], *cooked["correct"]])
    return np.asarray(rows, dtype=np.float64)


def bleu_from_statistics(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 from summed statistics [B, 10] -> [B, 4], with BleuScorer's constants."""
    tiny, small = 1e-15, 1e-9
    test_len, ref_len, guess, correct = sums[:, 0], sums[:, 1], sums[:, 2:6], sums[:, 6:10]
    precision_products = np.cumprod((correct + tiny) / (guess + small), axis=1)  # [B, 4]
    scores = precision_products ** (1.0 / np.arange(1, 5))
    ratio = (test_len + tiny) / (ref_len + small)
    brevity = np.exp(1 - 1 / np.minimum(ratio, 1.0))  # exp(0) = 1 where the test is not shorter
    return scores * brevity[:, None]


def rouge(gts: Captions, res: Captions) -> MetricValues:
    from pycocoevalcap.rouge.rouge import Rouge

    corpus, per_sample = Rouge().compute_score(gts, res)
    return MetricValues(float(corpus), np.asarray(per_sample, dtype=np.float64), mean_resampler(per_sample))


def cider(gts: Captions, res: Captions) -> MetricValues:
    """CIDEr-D as pycocoevalcap computes it; document frequencies come from these references."""
    from pycocoevalcap.cider.cider import Cider

    corpus, per_sample = Cider().compute_score(gts, res)
    return MetricValues(float(corpus), np.asarray(per_sample, dtype=np.float64), mean_resampler(per_sample))


def start_meteor() -> "RecordingMeteor":
    """pycocoevalcap's METEOR with its JVM started now (it loads while the captions are tokenized)."""
    from pycocoevalcap.meteor.meteor import Meteor

    class _RecordingMeteor(RecordingMeteor, Meteor):
        pass

    return _RecordingMeteor()


def meteor_statistics(lines: list[str]) -> np.ndarray:
    """METEOR's per-record statistics lines as a matrix [n, 23] whose column sums aggregate like its EVAL.

    Columns: test/reference length, test/reference function words, then per matcher module (exact,
    stem, synonym, paraphrase) test/reference content and function matches, then chunks and test/
    reference word matches. EVAL sums them all, except that a record matched completely in one chunk
    adds no chunk (``MeteorStats.addStats``); that record's chunk is zeroed here.
    """
    stats = np.asarray([[float(x) for x in line.split()] for line in lines], dtype=np.float64).reshape(len(lines), -1)
    test_matches, reference_matches = stats[:, 4:20:2].sum(axis=1), stats[:, 5:20:2].sum(axis=1)
    whole = (test_matches == stats[:, 0]) & (reference_matches == stats[:, 1]) & (stats[:, 20] == 1)
    stats[whole, 20] = 0
    return stats


class RecordingMeteor:
    """Mixin over pycocoevalcap's `Meteor` that keeps each record's statistics line for resampling."""

    statistics: list[str]

    def _stat(self, hypothesis_str, reference_list):
        line = super()._stat(hypothesis_str, reference_list)
        self.statistics.append(line)
        return line

    def score(self, gts: Captions, res: Captions, with_resampling: bool) -> MetricValues:
        self.statistics = []
        try:
            corpus, per_sample = self.compute_score(gts, res)
        except (ValueError, OSError) as exc:  # the JVM died: readline() gave b"" or the pipe broke
            raise ArtemisError(f"METEOR's Java process failed: {self._java_error() or exc}") from None
        resample = None
        if with_resampling:
            stats = meteor_statistics(self.statistics)  # [n, 23]
            resample = lambda weights: np.asarray([self.aggregate(row) for row in weights @ stats])  # noqa: E731
        return MetricValues(float(corpus), np.asarray(per_sample, dtype=np.float64), resample)

    def aggregate(self, summed_statistics: np.ndarray) -> float:
        """METEOR of summed statistics: what its ``EVAL`` computes over the records summed."""
        line = "EVAL ||| " + " ".join(repr(float(x)) for x in summed_statistics)
        with self.lock:
            self.meteor_p.stdin.write(f"{line}\n".encode())
            self.meteor_p.stdin.flush()
            self.meteor_p.stdout.readline()  # the one "segment" score; the aggregate follows
            return float(self.meteor_p.stdout.readline().strip())

    def _java_error(self) -> str:
        self.meteor_p.kill()
        self.meteor_p.wait()
        lines = self.meteor_p.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        """Stop the JVM now (pycocoevalcap only does so when the object is garbage-collected)."""
        process = getattr(self, "meteor_p", None)
        if process is None:  # __init__ failed before the JVM started
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):  # a pipe to a dead process may fail to flush
                stream.close()

    def __del__(self):
        self.close()
