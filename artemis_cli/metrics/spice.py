"""SPICE through the jar pycocoevalcap ships, when Stanford CoreNLP 3.6.0 can be found.

pycocoevalcap downloads CoreNLP on first use (which fails offline) and runs ``java -jar
spice-1.0.jar``, which only finds CoreNLP in its own ``lib`` folder. Here the jars may also come from
``--corenlp-dir`` or ``ARTEMIS_CORENLP_DIR``, so SPICE runs with an explicit class path; its input,
arguments and the reading of its output are pycocoevalcap's. The LMDB parse cache (``-cache``) is
left out: it only speeds up repeated runs, and its serializer fails on Java 16+. Whatever goes wrong
makes SPICE *unavailable, with the reason*, never a crash of the other metrics.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from artemis_cli.errors import UsageError
from artemis_cli.metrics.coco import Captions, MetricValues, mean_resampler
from artemis_cli.metrics.java import JavaRuntime

CORENLP_ENV = "ARTEMIS_CORENLP_DIR"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
HOW_TO_PROVIDE = ("download stanford-corenlp-full-2015-12-09.zip from https://nlp.stanford.edu/software/, "
                  f"unzip it, and pass that folder with --corenlp-dir or {CORENLP_ENV}")
NASHORN_NOTE = ("SPICE 1.0 writes its results through the Nashorn JavaScript engine, which Java 15 and "
                "newer no longer include; put a Java 8-14 first on PATH, or add nashorn-core 15.x and its "
                "asm jars to the CoreNLP folder")


class SpiceFailed(Exception):
    """SPICE ran and failed; the message is the reason shown as "unavailable"."""


@dataclass(frozen=True)
class SpiceSetup:
    """Where SPICE can run from (`classpath`), or why it cannot (`reason`)."""

    classpath: tuple[Path, ...] = ()
    reason: Optional[str] = None
    package_dir: Optional[Path] = None


def spice_package_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("pycocoevalcap is not installed", hint="pip install 'artemis[score]'")
    return Path(list(spec.submodule_search_locations)[0]) / "spice"


def _missing(folder: Path) -> list[str]:
    return [name for name in CORENLP_JARS if not (folder / name).is_file()]


def locate_spice(java: JavaRuntime, corenlp_dir: Optional[Path] = None,
                 environ: Mapping[str, str] = os.environ) -> SpiceSetup:
    """Find the SPICE jar and CoreNLP: `corenlp_dir`, else ``$ARTEMIS_CORENLP_DIR``, else pycocoevalcap's lib.

    A `corenlp_dir` without the jars is a usage error; the other cases report the reason instead.
    """
    package = spice_package_dir()
    spice_jar, lib = package / "spice-1.0.jar", package / "lib"
    if not spice_jar.is_file():
        return SpiceSetup(reason=f"{spice_jar} is missing (an incomplete pycocoevalcap install)")
    if corenlp_dir is not None:
        folder = Path(corenlp_dir)
        if _missing(folder):
            raise UsageError(f"--corenlp-dir {folder}: no {' or '.join(_missing(folder))} in it",
                             hint=HOW_TO_PROVIDE)
    elif environ.get(CORENLP_ENV):
        folder = Path(environ[CORENLP_ENV])
        if _missing(folder):
            return SpiceSetup(reason=f"{CORENLP_ENV}={folder} holds no {' or '.join(_missing(folder))}; "
                                     + HOW_TO_PROVIDE)
    else:
        folder = lib
        if _missing(folder):
            return SpiceSetup(reason="SPICE needs Stanford CoreNLP 3.6.0, which is not installed "
                                     "(pycocoevalcap downloads it on first use, which needs network); "
                                     + HOW_TO_PROVIDE)
    # spice-1.0.jar's manifest names its dependencies in lib/; CoreNLP may live elsewhere.
    extras = sorted(p for p in folder.glob("*.jar") if p.name.startswith(("nashorn", "asm")))
    corenlp = [folder / name for name in CORENLP_JARS]
    classpath = [spice_jar, *corenlp, *sorted(p for p in lib.glob("*.jar") if p not in corenlp), *extras]
    if java.major >= 15 and not any(p.name.startswith("nashorn") for p in classpath):
        return SpiceSetup(reason=f"{NASHORN_NOTE} (found {java.describe()})")
    return SpiceSetup(classpath=tuple(classpath), package_dir=package)


def run_spice(gts: Captions, res: Captions, setup: SpiceSetup, java: JavaRuntime) -> MetricValues:
    """SPICE F-score ("All") per record and its mean, as pycocoevalcap's `Spice.compute_score` gives.

    Raises `SpiceFailed` with the reason when the Java process fails.
    """
    keys = sorted(gts)
    entries = [{"image_id": key, "test": res[key][0], "refs": gts[key]} for key in keys]
    with tempfile.TemporaryDirectory(prefix="artemis-spice-") as tmp:
        in_path, out_path = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_path.write_text(json.dumps(entries, indent=2), encoding="utf-8")
        command = [str(java.path), "-Xmx8G", "-cp", os.pathsep.join(str(p) for p in setup.classpath),
                   "edu.anu.spice.SpiceScorer", str(in_path), "-out", str(out_path), "-subset", "-silent"]
        try:
            done = subprocess.run(command, cwd=setup.package_dir, capture_output=True, text=True,
                                  errors="replace")
        except OSError as exc:
            raise SpiceFailed(f"could not start SPICE: {exc}") from None
        if done.returncode != 0 or not out_path.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            cause = next((line for line in reversed(lines) if "Exception" in line or "Error" in line),
                         lines[-1] if lines else "no output")
            raise SpiceFailed(f"SPICE exited with code {done.returncode}: {cause.strip()}")
        try:
            results = json.loads(out_path.read_text(encoding="utf-8"))
            by_id = {item["image_id"]: _f_score(item["scores"]) for item in results}
        except (ValueError, KeyError, TypeError) as exc:
            raise SpiceFailed(f"SPICE wrote unreadable results: {exc}") from None
    if set(by_id) != set(keys):
        raise SpiceFailed(f"SPICE returned {len(by_id)} results for {len(keys)} records")
    # pycocoevalcap averages in SPICE's output order; a record without tuples gives NaN, as there.
    corpus = float(np.mean(np.array([by_id[item["image_id"]] for item in results])))
    per_sample = np.array([by_id[key] for key in keys], dtype=np.float64)
    return MetricValues(corpus, per_sample, mean_resampler(per_sample))


def _f_score(scores: dict) -> float:
    value = scores["All"]["f"]
    try:
        return float(value)
    except (TypeError, ValueError):  # SPICE writes null/"NaN" for records it could not score
        return float("nan")
