"""Splitting work over processes: one split rule, one shard-file naming, one reading of torchrun's env.

A shard is a contiguous slice of the sorted input (as the published ``--num_chunks/--chunk_idx``):
with N items and K shards, shard k takes items ``[k * ceil(N/K), (k + 1) * ceil(N/K))``. `features
extract` and `infer` both split this way and name a shard's own files ``<stem>.shard-k-of-K<suffix>``
(a single shard keeps the plain name). The count and index come from the flags, else from torchrun's
``WORLD_SIZE`` / ``RANK``, else one shard.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from artemis_cli.errors import UsageError


@dataclass(frozen=True)
class Shard:
    count: int = 1
    index: int = 0

    def slice(self, items: Sequence[Any]) -> list[Any]:
        """This shard's contiguous part of `items` (every item lands in exactly one shard)."""
        size = math.ceil(len(items) / self.count) if items else 0
        return list(items[self.index * size:(self.index + 1) * size])

    def file_name(self, stem: str, suffix: str = "") -> str:
        """``<stem><suffix>``, or ``<stem>.shard-k-of-K<suffix>`` when the work is split."""
        return f"{stem}{suffix}" if self.count == 1 else f"{stem}.shard-{self.index}-of-{self.count}{suffix}"

    def legacy_file_name(self, stem: str, suffix: str = "") -> str:
        """The zero-padded name `features extract` used before (``<stem>.shard-003-of-008<suffix>``)."""
        return f"{stem}{suffix}" if self.count == 1 else f"{stem}.shard-{self.index:03d}-of-{self.count:03d}{suffix}"

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "index": self.index}


def resolve_shard(num_shards: Optional[int] = None, shard_index: Optional[int] = None,
                  env: Optional[Mapping[str, str]] = None) -> Shard:
    """Explicit values, else torchrun's WORLD_SIZE / RANK, else a single shard (checked: a `UsageError`)."""
    env = os.environ if env is None else env
    try:
        count = num_shards if num_shards is not None else int(env.get("WORLD_SIZE", 1))
        index = shard_index if shard_index is not None else int(env.get("RANK", 0))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r} / RANK={env.get('RANK')!r} are not integers") from None
    if count < 1:
        raise UsageError(f"--num-shards / WORLD_SIZE {count}: at least 1 shard is needed")
    if not 0 <= index < count:
        raise UsageError(f"shard index {index} is outside 0..{count - 1}: with {count} shard(s) the index must be in "
                         f"0..{count - 1} (--shard-index / RANK)")
    return Shard(count, index)
