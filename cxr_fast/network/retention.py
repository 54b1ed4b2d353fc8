"""``listen --keep-days``: the spool's answered films and sent markers are deleted once old.

Without it a listener that runs for months fills its disk: answered/ keeps every film, sent/
one marker per SR. :class:`Retention` prunes once when listen starts (its banner says what
went), then every PRUNE_EVERY_S from a thread of its own, pausing between chunks of deletions
so that receiving, which fsyncs every film on the same disk, never waits behind a long burst.
"""

from __future__ import annotations

import threading
import time

from cxr_fast.messages import Log
from cxr_fast.network.spool import Spool
from cxr_fast.text import plural

PRUNE_EVERY_S = 3600.0
# Between two chunks of a periodic prune (spool.PRUNE_CHUNK files each): the film being
# received gets the disk.
CHUNK_PAUSE_S = 0.05
DAY_NS = 86_400 * 10**9


def pruned_text(films: int, markers: int, keep_days: float) -> str:
    """What a prune did: ``pruned 3 answered films and 1 sent marker older than 30 days``."""
    days = f"{keep_days:g} day{'' if keep_days == 1 else 's'}"
    return (
        f"pruned {plural(films, 'answered film')} and {plural(markers, 'sent marker')} "
        f"older than {days}"
    )


class Retention:
    """Deletes what ``spool`` holds past ``keep_days`` (0: nothing is ever deleted)."""

    def __init__(self, spool: Spool, keep_days: float, log: Log):
        self.spool, self.keep_days, self.log = spool, keep_days, log

    def prune(self, stop: threading.Event | None = None) -> tuple[int, int]:
        """Delete now what is older than ``keep_days``; (films, markers) deleted. With
        ``stop``, pause CHUNK_PAUSE_S between chunks and end early once it is set. A failure
        (a file that cannot be deleted) is logged, never raised: the listener goes on."""
        now, keep_ns = time.time_ns(), self.keep_days * DAY_NS
        if not 0 < keep_ns < now:  # 0, or so long (inf) that nothing can be that old
            return 0, 0
        cutoff = now - int(keep_ns)
        pause = (lambda: True) if stop is None else (lambda: not stop.wait(CHUNK_PAUSE_S))
        try:
            return self.spool.prune(cutoff, pause)
        except OSError as exc:
            self.log(f"cxr-fast: pruning the spool failed ({exc}); tried again later")
            return 0, 0

    def serve(self, stop: threading.Event) -> None:
        """Prune every PRUNE_EVERY_S until ``stop``, logging what went when anything did."""
        while not stop.wait(PRUNE_EVERY_S):
            films, markers = self.prune(stop)
            if films or markers:
                self.log(f"cxr-fast: {pruned_text(films, markers, self.keep_days)}")
