"""A torchrun scoring job seen as one: the ``--cam-top`` films of the whole archive, and one
summary of every rank's part for rank 0 to print."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from cxr_fast.distributed import DistContext, gather_objects


def global_top(ctx: DistContext, mine: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """The entries of this rank's ``mine`` (path, prob) that are among the ``k`` highest
    probabilities of every rank's (a collective: every rank calls it). Each rank then draws
    the overlays of its own files, so the job draws exactly ``k`` and each part's ``cam_path``
    column names the overlays of its rows."""
    everyone = [row for rows in gather_objects(ctx, mine) for row in rows]
    # Ties broken by path, so every rank agrees on the same k.
    best = heapq.nsmallest(k, everyone, key=lambda row: (-row[1], row[0]))
    chosen = set(best)
    return [row for row in mine if row in chosen]


@dataclass(frozen=True)
class PartStats:
    """What one rank did, for the job's summary."""

    scored: int
    resumed: int
    seconds: float
    cams: int
    loader: str
    loader_fallback: str | None


def merge_parts(ctx: DistContext, part: PartStats) -> PartStats:
    """Every rank's :class:`PartStats` as one (a collective): images and overlays summed, the
    job's seconds the slowest rank's (they run at once), the loaders named once each."""
    parts = gather_objects(ctx, part)
    loaders = sorted({p.loader for p in parts})
    fallbacks = [
        f"rank {rank}: {p.loader_fallback}" for rank, p in enumerate(parts) if p.loader_fallback
    ]
    return PartStats(
        scored=sum(p.scored for p in parts),
        resumed=sum(p.resumed for p in parts),
        seconds=max(p.seconds for p in parts),
        cams=sum(p.cams for p in parts),
        loader="+".join(loaders),
        loader_fallback="; ".join(fallbacks) or None,
    )
