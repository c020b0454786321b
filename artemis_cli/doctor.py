"""`doctor`: check the environment the pipeline needs and say how to fix what is missing."""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

Status = Literal["ok", "warn", "fail"]
MIN_FREE_GB = 50  # features for the full datasets alone take hundreds of GB


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _version(module: str) -> Optional[str]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure (missing, broken binary) is what we report
        return None if isinstance(exc, ImportError) else f"broken: {type(exc).__name__}: {exc}"
    return getattr(mod, "__version__", "installed")


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", "ok" if ok else "fail", f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "use Python 3.10 or newer")


def check_torch() -> Check:
    version = _version("torch")
    if version is None:
        return Check("torch", "fail", "not installed", "pip install -e . (installs torch)")
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        bf16 = "bf16 yes" if torch.cuda.is_bf16_supported() else "bf16 no (use --dtype float16)"
        return Check("torch / CUDA", "ok", f"torch {version}, CUDA {torch.version.cuda}: {names}; {bf16}")
    return Check("torch / CUDA", "warn", f"torch {version}, no CUDA GPU: everything runs on CPU (slow beyond the demo)",
                 "for real training/inference install a CUDA build of torch on a GPU machine")


def check_roi_align() -> Check:
    try:
        import torch
        from torchvision.ops import roi_align

        out = roi_align(torch.ones(1, 2, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4]]), (2, 2), 1.0, 2, True)
    except Exception as exc:  # torchvision missing or built for another torch
        return Check("torchvision RoIAlign", "fail", f"{type(exc).__name__}: {exc}",
                     "install the torchvision release that matches your torch")
    ok = bool(torch.allclose(out, torch.ones_like(out)))
    return Check("torchvision RoIAlign", "ok" if ok else "fail", "runs" if ok else "wrong values",
                 "" if ok else "reinstall torchvision")


def check_video() -> Check:
    decord, av = _version("decord"), _version("av")
    if decord and av:
        return Check("video decoding", "ok", f"decord {decord}, PyAV {av} (fallback)")
    if decord or av:
        have = f"decord {decord}" if decord else f"PyAV {av}"
        return Check("video decoding", "warn", f"{have} only", "pip install 'artemis[video]' for decord + PyAV")
    return Check("video decoding", "fail", "neither decord nor PyAV", "pip install 'artemis[video]'")


def check_java() -> tuple[Check, object]:
    try:
        from artemis_cli.metrics.java import resolve_java

        java = resolve_java()
    except ImportError:
        return Check("Java (scoring)", "fail", "artemis score is not importable", "pip install 'artemis[score]'"), None
    except Exception as exc:  # ArtemisError from resolve_java carries the hint
        return Check("Java (scoring)", "fail", getattr(exc, "message", str(exc)), getattr(exc, "hint", "") or ""), None
    return Check("Java (scoring)", "ok", java.describe()), java


NASHORN_JARS = "nashorn-core-15.4.jar and the asm 7.3.1 jars it needs (asm, asm-commons, asm-tree, asm-util, asm-analysis)"


def spice_requirements(java, environ=os.environ) -> list[str]:
    """What SPICE still needs, each item naming the exact file or runtime to provide (empty: nothing)."""
    from artemis_cli.metrics.spice import CORENLP_ENV, CORENLP_JARS, spice_package_dir

    package = spice_package_dir()
    folder = Path(environ[CORENLP_ENV]) if environ.get(CORENLP_ENV) else package / "lib"
    where = f"{CORENLP_ENV}={folder}" if environ.get(CORENLP_ENV) else f"pycocoevalcap's {folder}"
    needed = []
    if not (package / "spice-1.0.jar").is_file():
        needed.append(f"{package / 'spice-1.0.jar'} (reinstall pycocoevalcap: pip install 'artemis[score]')")
    missing = [name for name in CORENLP_JARS if not (folder / name).is_file()]
    if missing:
        needed.append(f"Stanford CoreNLP 3.6.0: {' and '.join(missing)} (not in {where}); unzip "
                      "stanford-corenlp-full-2015-12-09.zip from https://nlp.stanford.edu/software/ and pass that folder "
                      f"with --corenlp-dir or {CORENLP_ENV}")
    has_nashorn = any(p.name.startswith("nashorn") for p in folder.glob("*.jar"))
    if java.major >= 15 and not has_nashorn:
        needed.append(f"a Java 8-14 runtime first on PATH (found {java.describe()}; SPICE 1.0 needs the Nashorn engine "
                      f"that Java 15 removed), or {NASHORN_JARS} in the CoreNLP folder")
    return needed


def check_spice(java) -> Check:
    name = "SPICE (CoreNLP jars)"
    if java is None:
        return Check(name, "warn", "needs Java first", "fix Java, then rerun")
    try:
        from artemis_cli.metrics.spice import locate_spice

        setup = locate_spice(java)
        needed = spice_requirements(java)
    except Exception as exc:  # pycocoevalcap missing, or a bad ARTEMIS_CORENLP_DIR
        return Check(name, "warn", getattr(exc, "message", str(exc)), "pip install 'artemis[score]'")
    if setup.reason or needed:
        return Check(name, "warn", "unavailable: artemis score reports SPICE as unavailable, the other metrics work",
                     "provide " + "; and ".join(needed) if needed else setup.reason)
    return Check(name, "ok", f"{len(setup.classpath)} jars found, {java.describe()}")


def check_deepspeed() -> Check:
    version = _version("deepspeed")
    if version is None:
        return Check("DeepSpeed", "warn", "not installed: --deepspeed is unavailable (plain Trainer still works)",
                     "pip install 'artemis[train]'")
    if version.startswith("broken"):
        return Check("DeepSpeed", "fail", version, "reinstall deepspeed")
    ninja = shutil.which("ninja") or _version("ninja")
    detail = f"deepspeed {version}; ops are JIT-compiled on first use (needs a C++ compiler and ninja)"
    if not ninja or not shutil.which(os.environ.get("CXX", "c++")):
        return Check("DeepSpeed", "warn", detail + ": ninja or c++ missing", "pip install ninja; install a C++ compiler (g++)")
    return Check("DeepSpeed", "ok", detail)


def check_open_clip() -> Check:
    version = _version("open_clip")
    if version is None:
        return Check("open_clip", "warn", "not installed: `features extract --backend open_clip` unavailable",
                     "pip install 'artemis[clip]'")
    return Check("open_clip", "ok", f"open_clip {version}")


def check_web() -> Check:
    """The web extra (`artemis web`): gradio 6 and gradio-image-annotation, read from their metadata
    (importing gradio takes seconds)."""
    from importlib import metadata

    found = {}
    for dist in ("gradio", "gradio-image-annotation"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    missing = [dist for dist, version in found.items() if version is None]
    if missing:
        return Check("web page", "warn", f"{', '.join(missing)} not installed: `artemis web` is unavailable",
                     "pip install 'artemis[web]'")
    detail = f"gradio {found['gradio']}, gradio-image-annotation {found['gradio-image-annotation']}"
    if not found["gradio"].split(".")[0].isdigit() or int(found["gradio"].split(".")[0]) < 6:
        return Check("web page", "warn", f"{detail}: `artemis web` needs gradio 6 or newer", "pip install -U 'artemis[web]'")
    return Check("web page", "ok", detail)


def check_openai() -> Check:
    version = _version("openai")
    key = "set" if os.environ.get("OPENAI_API_KEY") else "not set"
    if version is None:
        return Check("openai (judge)", "warn", f"not installed; OPENAI_API_KEY {key}", "pip install 'artemis[judge]'")
    if key == "not set":
        return Check("openai (judge)", "warn", f"openai {version}; OPENAI_API_KEY not set",
                     "export OPENAI_API_KEY=... (or use --base-url for a local OpenAI-compatible server)")
    return Check("openai (judge)", "ok", f"openai {version}; OPENAI_API_KEY set")


def check_disk(path: Path) -> Check:
    if not path.exists():
        parent = next((p for p in Path(path).absolute().parents if p.exists()), Path.cwd())
        free_gb = shutil.disk_usage(parent).free / 1e9
        return Check("free disk", "fail", f"{path} does not exist ({free_gb:.0f} GB free at {parent})",
                     f"create it (mkdir -p {path}) or pass --path an existing folder")
    target = path
    free_gb = shutil.disk_usage(target).free / 1e9
    detail = f"{free_gb:.0f} GB free at {target}"
    if free_gb < MIN_FREE_GB:
        return Check("free disk", "warn", detail, "the full datasets and features need hundreds of GB; the demo needs < 1 GB")
    return Check("free disk", "ok", detail)


def doctor(path: Path = Path(".")) -> list[Check]:
    """Run every environment check; each returns a status, what it found and how to fix it."""
    checks: list[Callable[[], Check]] = [check_python, check_torch, check_roi_align, check_video]
    results = [check() for check in checks]
    java_check, java = check_java()
    results += [java_check, check_spice(java), check_deepspeed(), check_open_clip(), check_web(), check_openai(), check_disk(path)]
    return results


def as_json(checks: list[Check]) -> dict:
    return {"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]}
