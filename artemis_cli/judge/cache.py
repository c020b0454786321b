"""On-disk judge cache (SQLite): one row per (model, prompt hash, item content hash).

A verdict is stored the moment its reply parses (before the per-item output line is written), so a
run killed at any point never pays again for a verdict it received. Changing the model, the prompt
template or request parameters, or the item text gives a new key. Failed items are not cached: a
rerun tries them again. Safe to share between threads of one run and between runs (WAL mode).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artemis_cli.errors import InputError

CACHE_FILE = "judge_cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    item_hash TEXT NOT NULL,
    verdict TEXT NOT NULL,
    served_model TEXT,
    raw_reply TEXT,
    attempts INTEGER NOT NULL,
    usage TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (model, prompt_hash, item_hash)
)
"""


@dataclass(frozen=True)
class CachedVerdict:
    verdict: dict[str, Any]
    served_model: str | None
    raw_reply: str | None
    attempts: int
    usage: dict[str, int] | None


def default_cache_dir() -> Path:
    """``$ARTEMIS_CACHE/judge``, else ``$XDG_CACHE_HOME/artemis/judge``, else ``~/.cache/artemis/judge``."""
    if os.environ.get("ARTEMIS_CACHE"):
        return Path(os.environ["ARTEMIS_CACHE"]) / "judge"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "artemis" / "judge"


class JudgeCache:
    """SQLite verdict cache in `folder`; use as a context manager."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / CACHE_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> "JudgeCache":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a usable judge cache ({exc})",
                             hint="move the file aside (the next run rebuilds it) or pass another --cache") from None
        self._conn = conn
        return self

    def __exit__(self, *exc) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_many(self, model: str, prompt_hash: str, item_hashes: list[str]) -> dict[str, CachedVerdict]:
        """The cached verdicts among `item_hashes`, keyed by item hash."""
        assert self._conn is not None, "use JudgeCache as a context manager"
        found: dict[str, CachedVerdict] = {}
        unique = sorted(set(item_hashes))
        with self._lock:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT item_hash, verdict, served_model, raw_reply, attempts, usage FROM verdicts "
                    f"WHERE model = ? AND prompt_hash = ? AND item_hash IN ({marks})",
                    [model, prompt_hash, *chunk],
                ).fetchall()
                for item_hash, verdict, served, raw, attempts, usage in rows:
                    found[item_hash] = CachedVerdict(json.loads(verdict), served, raw, attempts,
                                                     json.loads(usage) if usage else None)
        return found

    def put(self, model: str, prompt_hash: str, item_hash: str, entry: CachedVerdict) -> None:
        assert self._conn is not None, "use JudgeCache as a context manager"
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model, prompt_hash, item_hash, json.dumps(entry.verdict), entry.served_model, entry.raw_reply,
                 entry.attempts, json.dumps(entry.usage) if entry.usage else None, time.time()),
            )
