"""The spool's pruning: which answered films and sent markers go, which stay, and how."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cxr_fast.network import spool as spool_module
from cxr_fast.network.retention import DAY_NS
from cxr_fast.network.spool import Spool


def _ago(days: float) -> int:
    return time.time_ns() - int(days * DAY_NS)


def old_film(spool: Spool, folder: str, days: float, uid: str) -> Path:
    """A film as the spool names it, received ``days`` ago (its mtime: now)."""
    path = spool.folder(folder) / f"{_ago(days)}-{uid}.dcm"
    path.write_bytes(b"DICM")
    return path


def old_file(path: Path, days: float) -> Path:
    """``path`` written, its mtime ``days`` ago."""
    path.write_bytes(b"")
    stamp = _ago(days)
    os.utime(path, ns=(stamp, stamp))
    return path


def test_prune_deletes_only_answered_films_and_markers_past_the_cutoff(tmp_path):
    spool = Spool.open(tmp_path / "spool")
    gone = [
        old_film(spool, "answered", 40, "1.2.3.1"),
        old_film(spool, "answered", 30.5, "1.2.3.2"),
        old_file(spool.folder("sent") / "2.25.1", 31),
        old_file(spool.folder("sent") / "2.25.2", 400),
    ]
    kept = [
        old_film(spool, "answered", 29, "1.2.3.3"),
        old_film(spool, "answered", 0, "1.2.3.4"),
        old_file(spool.folder("sent") / "2.25.3", 29),
        old_file(spool.folder("sent") / "2.25.4", 0),
        # Old, but in folders that are never pruned.
        old_film(spool, "incoming", 90, "1.2.3.5"),
        old_file(spool.folder("outbox") / "2.25.5.dcm", 90),
        old_file(spool.folder("refused") / "2.25.6.dcm", 90),
        # Old, but not named as the spool names what it prunes.
        old_file(spool.folder("answered") / "notes.txt", 90),
        old_file(spool.folder("answered") / "scan.dcm", 90),
        old_file(spool.folder("sent") / "README", 90),
        old_file(spool.folder("sent") / ".2.25.7.tmp", 90),
    ]
    (spool.folder("answered") / f"{_ago(90)}-1.2.3.6.dcm").mkdir()  # a folder: left alone
    assert spool.prune(_ago(30)) == (2, 2)
    assert [p.name for p in gone if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []
    assert spool.prune(_ago(30)) == (0, 0)


def test_prune_goes_in_chunks_fsynced_and_stops_when_told(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "PRUNE_CHUNK", 2)
    synced: list[str] = []
    real_fsync = spool_module.fsync_dir
    monkeypatch.setattr(
        spool_module, "fsync_dir", lambda folder: (synced.append(folder.name), real_fsync(folder))
    )
    spool = Spool.open(tmp_path / "spool")
    films = [old_film(spool, "answered", 40, f"1.2.3.{i}") for i in range(5)]
    markers = [old_file(spool.folder("sent") / f"2.25.{i}", 40) for i in range(3)]
    pauses: list[int] = []

    def pause() -> bool:
        pauses.append(1)
        return len(pauses) < 2  # the second pause ends it

    assert spool.prune(_ago(30), pause) == (4, 0)  # two chunks of two, then stopped
    assert synced == ["answered", "answered"]
    assert sum(f.exists() for f in films) == 1 and all(m.exists() for m in markers)

    synced.clear()
    assert spool.prune(_ago(30)) == (1, 3)
    assert synced == ["answered", "sent", "sent"]
    assert not any(p.exists() for p in [*films, *markers])


@pytest.mark.parametrize("days", [0.5, 7])
def test_the_cutoff_is_exclusive_of_newer_files(tmp_path, days):
    spool = Spool.open(tmp_path / "spool")
    older = old_film(spool, "answered", days * 1.01, "1.2.3.1")
    newer = old_film(spool, "answered", days * 0.99, "1.2.3.2")
    assert spool.prune(_ago(days)) == (1, 0)
    assert not older.exists() and newer.exists()
