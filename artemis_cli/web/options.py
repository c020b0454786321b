"""Settings of `artemis web` (`WebOptions`) and its serving rules: loopback by default, a login for
any other address, an upload limit, a queue with a fixed number of workers.

No gradio here: `artemis web --help` and the option checks stay light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from artemis_cli.common.devices import DeviceName
from artemis_cli.common.net import is_loopback
from artemis_cli.errors import UsageError

AUTH_ENV = "ARTEMIS_WEB_AUTH"
CACHE_ENV = "ARTEMIS_CACHE"
TrackerName = Literal["csrt", "kcf", "sam2"]
TRACKERS: tuple[str, ...] = ("csrt", "kcf", "sam2")


def default_cache_dir() -> Path:
    """``$ARTEMIS_CACHE/web-demo``, else ``$XDG_CACHE_HOME/artemis/web-demo``, else ``~/.cache/artemis/web-demo``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "web-demo"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "artemis" / "web-demo"




def parse_auth(text: str, source: str) -> tuple[str, str]:
    """``USER:PASS`` -> (user, password); the password may itself contain ':'."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        # never echo the value: it is (or is meant to be) a password
        raise UsageError(f"{source}: expected USER:PASS with a non-empty user and password",
                         hint="for example --auth alice:a-long-passphrase")
    return user, password


class WebOptions(BaseModel):
    """Settings of `serve_web` (the flags of `artemis web`)."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = None  # checkpoint folder or hub id; None only with `demo`
    model_base: Optional[str] = None
    image_tower: Optional[str] = None
    demo: bool = False  # the tiny demo model and the sample videos (built on first use in `cache_dir`)
    cache_dir: Optional[Path] = None  # demo assets and the track/feature caches; None: `default_cache_dir()`
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(7860, ge=1, le=65535)
    auth: Optional[str] = Field(None, repr=False)  # USER:PASS; None: $ARTEMIS_WEB_AUTH
    tracker: TrackerName = "csrt"
    tracker_model: Optional[str] = None  # SAM 2 checkpoint folder or hub id (the sam2 tracker only)
    device: DeviceName = "auto"
    dtype: str = "auto"
    max_upload_mb: float = Field(500, gt=0)
    concurrency: int = Field(1, ge=1, le=64)
    max_new_tokens: int = Field(256, ge=1, le=4096)
    show_progress: bool = True

    @model_validator(mode="after")
    def _model_or_demo(self) -> "WebOptions":
        if self.demo and self.model:
            raise ValueError("--demo serves the tiny demo model: leave out --model")
        if not self.demo and not self.model:
            raise ValueError("pass --model CHECKPOINT (or --demo for the tiny demo model)")
        if self.model_base and not self.model:
            raise ValueError("--model-base needs --model")
        return self

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()

    def credentials(self, env: Optional[dict] = None) -> Optional[tuple[str, str]]:
        """The login from `auth`, else `$ARTEMIS_WEB_AUTH`; a non-loopback `host` without one is refused."""
        env = os.environ if env is None else env
        if self.auth:
            credentials = parse_auth(self.auth, "--auth")
        elif env.get(AUTH_ENV):
            credentials = parse_auth(env[AUTH_ENV], AUTH_ENV)
        else:
            credentials = None
        if credentials is None and not is_loopback(self.host):
            raise UsageError(f"--host {self.host} is reachable from other machines: it needs a login",
                             hint=f"pass --auth USER:PASS (or set {AUTH_ENV}=USER:PASS), or serve on 127.0.0.1")
        return credentials

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)
