"""Progress for people: a tqdm bar on a terminal; in a log or a pipe, a plain line now and then.

tqdm with ``disable=None`` is silent when stderr is not a terminal, so a batch job's log showed
nothing until the end. There a ticker thread prints ``score: 1,200 of 5,000 images, 150.0
images/s, about 25 s left`` every :data:`LOG_INTERVAL_S` seconds instead.
"""

from __future__ import annotations

import threading
import time

from tqdm import tqdm

from cxr_fast.messages import to_stderr
from cxr_fast.text import plural, rate

# Seconds between two plain progress lines in a log (a module global, so tests can shorten it).
LOG_INTERVAL_S = 10.0


class Progress:
    """A progress display with ``update(n)`` and, once the count is known, ``set_total(n)``."""

    def __init__(self, desc: str, total: int = 0, unit: str = "img", noun: str = "image") -> None:
        self.desc, self.noun = desc, noun
        self.total, self.done = total, 0
        # disable=None: a bar on a terminal, silence in logs and pipes (the ticker speaks there).
        self.bar = tqdm(
            total=total or None, desc=desc, unit=unit, dynamic_ncols=True, leave=False, disable=None
        )
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.bar.disable:
            self._ticker = threading.Thread(target=self._tick, name=f"{desc} progress", daemon=True)
            self._ticker.start()

    def set_total(self, total: int) -> None:
        """The count, once known: the bar gets its total and an ETA, the log lines an "of N"."""
        self.total = total
        self.bar.total = total or None
        self.bar.refresh()

    def reset(self, total: int | None = None) -> None:
        """Start counting again (a second pass), with a new total when given."""
        self.done = 0
        self.started = time.perf_counter()
        self.total = total or 0
        self.bar.reset(total=total or None)

    def update(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.done += n
        self.bar.update(n)

    def line(self) -> str:
        """``score: 1,200 of 5,000 images, 150.0 images/s, about 25 s left``."""
        seconds = time.perf_counter() - self.started
        done = (
            f"{self.done:,} of {plural(self.total, self.noun)}"
            if self.total
            else plural(self.done, self.noun)
        )
        text = f"{self.desc}: {done}, {rate(self.done, seconds)}"
        if self.total and 0 < self.done < self.total and seconds > 0:
            text += f", about {(self.total - self.done) * seconds / self.done:,.0f} s left"
        return text

    def _tick(self) -> None:
        while not self._stop.wait(LOG_INTERVAL_S):
            to_stderr(self.line())

    def close(self) -> None:
        """Stop the ticker and the bar."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Working(Progress):
    """Progress for work that counts nothing (loading, tracing, drawing): on a terminal
    ``export: working on RUN`` until it ends; in a log ``export: working on RUN, 20 s so far``
    every :data:`LOG_INTERVAL_S` seconds. Nothing is printed at once in a log, so that a user
    mistake found while starting stays the one line it is (issue 11)."""

    def __init__(self, desc: str, what: str) -> None:
        self.what = what
        super().__init__(desc)
        self.bar.bar_format = f"{desc}: working on {what}"
        self.bar.refresh()

    def line(self) -> str:
        """``export: working on runs/a, 20 s so far``."""
        seconds = time.perf_counter() - self.started
        return f"{self.desc}: working on {self.what}, {seconds:.0f} s so far"
