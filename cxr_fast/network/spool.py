"""The spool: where ``listen`` keeps every film from receipt to answer, so that a kill loses none.

    SPOOL/incoming/   films received and fsynced, not yet answered
    SPOOL/answered/   films whose row and SR are written (pruned: --keep-days)
    SPOOL/outbox/     SRs to send (named by their SOP Instance UID)
    SPOOL/sent/       one empty marker per SR the PACS acknowledged (pruned: --keep-days)
    SPOOL/refused/    SRs the PACS refused outright (kept, not retried)

Every file arrives through a temporary name, an fsync and a rename, and the folder is fsynced
after: a file under its final name is whole and survives a power cut. A received film's name
holds the time it was received (nanoseconds) and its SOP Instance UID; the calling AE title
travels in its file meta (Source Application Entity Title). :meth:`Spool.prune` deletes the
answered films and sent markers past their keeping (``listen --keep-days``, retention.py).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INCOMING, ANSWERED, OUTBOX, SENT = "incoming", "answered", "outbox", "sent"
REFUSED = "refused"
_UNSAFE = re.compile(r"[^0-9A-Za-z.]")
# Only names the spool gives are ever pruned: a received film, a sent/ marker (a UID).
_FILM = re.compile(r"[0-9]+-[0-9A-Za-z._]*\.dcm")
_MARKER = re.compile(r"[0-9][0-9.]*")
# Files unlinked between two fsyncs of their folder (and two calls of prune's ``pause``).
PRUNE_CHUNK = 256


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a new or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all, and durably (fsync of file and folder;
    ``sync`` False leaves the folder's fsync to the caller, once for many files)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


@dataclass(frozen=True)
class Spool:
    """The spool folders under ``root`` (made by :meth:`open`)."""

    root: Path

    @classmethod
    def open(cls, root: Path) -> Spool:
        """The spool at ``root``, its folders made; leftovers of interrupted writes removed."""
        spool = cls(root.resolve())
        for name in (INCOMING, ANSWERED, OUTBOX, SENT, REFUSED):
            (spool.root / name).mkdir(parents=True, exist_ok=True)
            for partial in (spool.root / name).glob(".*.tmp"):
                partial.unlink(missing_ok=True)
        return spool

    def folder(self, name: str) -> Path:
        return self.root / name

    def receive(self, data: bytes, sop_instance_uid: str) -> Path:
        """Keep a received film (DICOM file bytes) durably in incoming/; its path."""
        name = f"{time.time_ns()}-{_UNSAFE.sub('_', sop_instance_uid)[:64]}.dcm"
        path = self.folder(INCOMING) / name
        durable_write(path, data)
        return path

    def unanswered(self) -> list[Path]:
        """Films received and not yet answered, oldest first."""
        return sorted(self.folder(INCOMING).glob("*.dcm"), key=lambda p: received_ns(p))

    def answered_path(self, incoming: Path) -> Path:
        """Where ``incoming`` goes once answered (the path its row names)."""
        return self.folder(ANSWERED) / incoming.name

    def mark_answered(self, films: list[Path]) -> None:
        """Move answered films out of incoming/ (durably, one fsync per folder)."""
        for film in films:
            os.replace(film, self.answered_path(film))
        if films:
            self.sync(ANSWERED)
            self.sync(INCOMING)

    def sync(self, name: str) -> None:
        """fsync one spool folder (its new and renamed entries)."""
        fsync_dir(self.folder(name))

    def was_sent(self, sop_instance_uid: str) -> bool:
        """Whether the PACS acknowledged the SR with this SOP Instance UID."""
        return (self.folder(SENT) / sop_instance_uid).exists()

    def put_outbox(self, sop_instance_uid: str, data: bytes, sync: bool = True) -> bool:
        """Queue an SR (DICOM file bytes) unless it was sent already; whether it was queued.
        ``sync`` False: the caller fsyncs the outbox (:meth:`sync`) once for several."""
        if self.was_sent(sop_instance_uid):
            return False
        durable_write(self.folder(OUTBOX) / f"{sop_instance_uid}.dcm", data, sync)
        return True

    def outbox(self) -> list[Path]:
        """SRs waiting to be sent, oldest first."""
        return sorted(self.folder(OUTBOX).glob("*.dcm"), key=lambda p: p.stat().st_mtime_ns)

    def mark_sent(self, sr: Path) -> None:
        """Record that the PACS acknowledged ``sr`` (marker first, durably), then drop it."""
        durable_write(self.folder(SENT) / sr.stem, b"")
        sr.unlink(missing_ok=True)
        fsync_dir(self.folder(OUTBOX))

    def set_aside(self, sr: Path) -> Path:
        """Move an SR the PACS refused out of the outbox into refused/; where it went."""
        target = self.folder(REFUSED) / sr.name
        os.replace(sr, target)
        fsync_dir(self.folder(REFUSED))
        fsync_dir(self.folder(OUTBOX))
        return target

    def prune(
        self, older_than_ns: int, pause: Callable[[], bool] = lambda: True
    ) -> tuple[int, int]:
        """Delete the answered films received before ``older_than_ns`` (ns since the epoch)
        and the sent/ markers last written before it; (films, markers) deleted. They go
        PRUNE_CHUNK at a time, the folder fsynced after each chunk; ``pause`` runs between
        two chunks, and its False stops the pruning there. incoming/, outbox/ and refused/
        are never touched."""
        films = _names(
            self.folder(ANSWERED),
            lambda e: _FILM.fullmatch(e.name) and received_ns(Path(e.name)) < older_than_ns,
        )
        removed_films = _unlink_chunked(self.folder(ANSWERED), films, pause)
        if removed_films < len(films):  # stopped by ``pause``
            return removed_films, 0
        markers = _names(
            self.folder(SENT),
            lambda e: _MARKER.fullmatch(e.name) and e.stat().st_mtime_ns < older_than_ns,
        )
        return removed_films, _unlink_chunked(self.folder(SENT), markers, pause)


def _names(folder: Path, wanted: Callable[[os.DirEntry], object]) -> list[str]:
    """The names of ``folder``'s plain files (not links) that are ``wanted``."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.is_file(follow_symlinks=False) and wanted(e)]


def _unlink_chunked(folder: Path, names: list[str], pause: Callable[[], bool]) -> int:
    """Unlink ``folder``'s ``names`` PRUNE_CHUNK at a time, fsyncing the folder after each
    chunk; how many are gone (a name already gone counts: someone else removed it)."""
    done = 0
    for start in range(0, len(names), PRUNE_CHUNK):
        if start and not pause():
            break
        for name in names[start : start + PRUNE_CHUNK]:
            (folder / name).unlink(missing_ok=True)
        done = min(start + PRUNE_CHUNK, len(names))
        fsync_dir(folder)
    return done


def received_ns(film: Path) -> int:
    """When a spooled film was received (ns since the epoch), from its name."""
    try:
        return int(film.name.split("-", 1)[0])
    except ValueError:
        return 0
