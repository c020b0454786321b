"""A model named on the command line: a local folder, or a Hugging Face hub id, resolved fast offline.

One place for every option that takes "a folder or a hub id" (`--model`, `--model-base`, `--clip-model`,
`--image-tower`, the features `--model`). A missing folder is bad usage (exit 2) named by its option. A hub
id is looked up in the local HF cache first; only when it is not there is the hub asked, and only after a
connection probe of a few seconds: offline (no route, no DNS, or ``HF_HUB_OFFLINE=1``) the answer is one
error line at once, not a minute of huggingface_hub's retries.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from artemis_cli.errors import UsageError

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
TOY_MODEL = "toy"  # names the trained toy Artemis shipped in the package (`artemis model train-toy` made it)
MODEL_FILES = ["*.json", "*.safetensors", "*.bin", "*.model", "*.txt"]
PROBE_SECONDS = 3.0


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the hub endpoint (or the HTTPS proxy in use) opens within `timeout`."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_folder(name: str | os.PathLike, *, option: str, allow_patterns: list[str] | None = None) -> Path:
    """The local folder for `name`: the folder itself, or the hub id's snapshot (cached, else downloaded).

    `toy` (`TOY_MODEL`), unless a folder of that name is here, is the toy Artemis shipped in the package.
    Raises `UsageError` naming `option` when `name` is a file, a missing folder, or a hub id that is neither
    cached nor reachable."""
    path = Path(name).expanduser()
    if path.is_dir():
        _check_local_toy(path, name, option)
        return path
    check_model_name(name, option=option)
    text = str(name)
    if text == TOY_MODEL:
        return toy_model_folder(option)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = allow_patterns or MODEL_FILES
    try:
        return Path(snapshot_download(text, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    hint = (f"download it where there is a network (`hf download {text}`) and pass the folder, "
            f"or run online once to fill the Hugging Face cache")
    if not hub_reachable():
        raise UsageError(f"{option} {text}: no such folder, not in the Hugging Face cache, and the hub cannot be "
                         f"reached (offline)", hint=hint)
    try:
        return Path(snapshot_download(text, allow_patterns=patterns))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{option} {text}: no such folder, and the hub did not give it ({first})", hint=hint) from None


def check_model_name(name: str | os.PathLike, *, option: str) -> None:
    """The `UsageError`s `resolve_model_folder` gives without the hub (in milliseconds, nothing imported): a file,
    or a missing folder whose name is not a hub id (nor `toy`)."""
    path = Path(name).expanduser()
    if path.is_dir():
        _check_local_toy(path, name, option)
        return
    if path.exists():
        raise UsageError(f"{option} {path}: expected a folder, got a file")
    if str(name) != TOY_MODEL and not HUB_ID.match(str(name)):
        raise UsageError(f"{option} {name}: no such folder")


TOY_FOLDER = Path(__file__).resolve().parents[1] / "assets" / "toy"  # `--model toy`


def _check_local_toy(path: Path, name: str | os.PathLike, option: str) -> None:
    """A folder named `toy` where the command runs is taken before the shipped toy model; one that holds no model
    (no config.json) is refused here, saying so, instead of failing later on a missing config.json."""
    if str(name) == TOY_MODEL and not (path / "config.json").is_file():
        raise UsageError(f"{option} {TOY_MODEL}: ./{TOY_MODEL} here is a folder without config.json, and a folder of "
                         f"that name is taken before the shipped toy model",
                         hint=f"run from another folder, or name the shipped model by its path: {option} {TOY_FOLDER}")


def toy_model_folder(option: str = "--model") -> Path:
    """The toy Artemis shipped in the package (a merged checkpoint with its CLIP tower in `clip/`)."""
    folder = TOY_FOLDER
    if not (folder / "config.json").is_file():
        raise UsageError(f"{option} {TOY_MODEL}: the toy model is missing from this installation ({folder})",
                         hint="reinstall artemis, or make one: artemis model train-toy OUT, then --model OUT/model")
    return folder
