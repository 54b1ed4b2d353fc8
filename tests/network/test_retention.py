"""``listen --keep-days``: 0 keeps everything, the periodic thread prunes and stops at once,
a failure is logged and never stops the listener."""

from __future__ import annotations

import threading
import time

from cxr_fast.network import retention
from cxr_fast.network.retention import Retention, pruned_text
from cxr_fast.network.spool import Spool
from tests.network.test_spool import old_file, old_film


def test_zero_keeps_everything_however_old(tmp_path):
    spool = Spool.open(tmp_path / "spool")
    film = old_film(spool, "answered", 3650, "1.2.3.1")
    marker = old_file(spool.folder("sent") / "2.25.1", 3650)
    for forever in (0, float("inf"), 1e300):
        assert Retention(spool, forever, print).prune() == (0, 0)
    assert film.exists() and marker.exists()
    assert Retention(spool, 3650.5, print).prune() == (0, 0)
    assert Retention(spool, 3649.5, print).prune() == (1, 1)
    assert not film.exists() and not marker.exists()


def test_the_thread_prunes_periodically_logs_and_stops_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(retention, "PRUNE_EVERY_S", 0.05)
    spool = Spool.open(tmp_path / "spool")
    lines: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=Retention(spool, 1, lines.append).serve, args=(stop,))
    thread.start()
    try:
        film = old_film(spool, "answered", 2, "1.2.3.1")
        kept = old_film(spool, "answered", 0.5, "1.2.3.2")
        deadline = time.monotonic() + 10
        while (film.exists() or not lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lines == ["cxr-fast: pruned 1 answered film and 0 sent markers older than 1 day"]
        assert kept.exists()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_failed_prune_is_logged_not_raised(tmp_path, monkeypatch):
    spool = Spool.open(tmp_path / "spool")

    def refuse(*_):
        raise PermissionError(13, "Permission denied", str(spool.folder("answered")))

    monkeypatch.setattr(Spool, "prune", refuse)
    lines: list[str] = []
    assert Retention(spool, 30, lines.append).prune() == (0, 0)
    assert len(lines) == 1 and "pruning the spool failed ([Errno 13] Permission" in lines[0]


def test_the_line_says_what_went():
    assert pruned_text(3, 1, 30) == "pruned 3 answered films and 1 sent marker older than 30 days"
    assert pruned_text(1, 2, 0.5).endswith("older than 0.5 days")
