"""File discovery: walk a folder once into records (path, label, split, patient).

The Kaggle layout ``{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` is recognised at any level the
user points at (the dataset root, one split, or one class folder) because labels and splits are
read from each file's own parent folders, not from positions relative to the root. Any other
tree is an unlabeled archive.

Files are images by extension (``.jpeg .jpg .png .dcm``) or, for any other name, by content:
a DICOM Part 10 file (``DICM`` at byte 128) such as ``IM00001`` from a PACS export. Nothing is
dropped silently: other files are counted (``Discovery.skipped``), folders and entries the walk
cannot read are listed (``Discovery.unreadable``) and the caller's own outputs under the root
(``exclude``) are named (``Discovery.excluded``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.labels import label_index
from cxr_fast.messages import to_stderr

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png", ".dcm"})
IMAGE_NAMES = ".jpeg/.jpg/.png/.dcm"  # IMAGE_EXTENSIONS as messages spell them
JPEG_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg"})
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_SKIPPED_DIRS = frozenset({"__MACOSX"})
DICOM_EXTENSION = ".dcm"
# A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
DICOM_MAGIC = b"DICM"
DICOM_HEAD_BYTES = 132
# A DICOMDIR is a media index (it has the DICM magic too), never an image: left out by name.
DICOMDIR_NAME = "DICOMDIR"

# Kaggle names: person12_virus_40, NORMAL2-IM-0373-0001, IM-0115-0001. Anything else keeps its
# stem minus one trailing counter (00000001_000 -> 00000001, as NIH ChestX-ray14 names follow-ups).
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(.+?)[-_]\d+$"),
)


@dataclass(frozen=True, slots=True)
class Record:
    """One image file: its path, label index (None when unknown), split and patient id."""

    path: str
    label: int | None
    split: str | None
    patient: str


@dataclass(frozen=True)
class Discovery:
    """What a walk found: image records (sorted by path); ``skipped``: how many files were left
    out as not images by name or content (DICOMDIR included); ``unreadable``: (path, reason) of
    each folder or entry that could not be read, so its files are unknown; ``excluded``: the
    paths of the caller's own outputs found under the root and left out."""

    records: list[Record]
    skipped: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def odd_names(self) -> int:
        """Records whose path is not valid UTF-8 (see :func:`display_path`)."""
        return sum(path_bytes(r.path) is not None for r in self.records)


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text. A name that is not UTF-8 arrives from the OS with its bad
    bytes as surrogates (PEP 383), which Parquet, JSON files and terminals refuse: those bytes
    become ``\\xNN`` escapes. Lossy for such names only; :func:`path_bytes` keeps the real one."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def path_bytes(path: str) -> bytes | None:
    """The real name as bytes (``os.fsencode``) when :func:`display_path` is not ``path``
    itself, else None (the text is the name)."""
    return None if display_path(path) == path else os.fsencode(path)


def real_path(display: str, raw: bytes | None) -> str:
    """The path :func:`display_path` and :func:`path_bytes` were made from."""
    return display if raw is None else os.fsdecode(raw)


def is_dicom_bytes(data: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then ``DICM`` (the content, not the name)."""
    return data[128:DICOM_HEAD_BYTES] == DICOM_MAGIC


def sniff_dicom(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a regular file that starts like DICOM (132 bytes read); False
    for anything else, unreadable files included (the decoder then names the problem)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a FIFO would block
            return False
        with open(path, "rb") as handle:
            return is_dicom_bytes(handle.read(DICOM_HEAD_BYTES))
    except OSError:
        return False


def _extension(path: str | os.PathLike[str]) -> str:
    return os.path.splitext(path)[1].lower()


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """Whether a decoder should read ``path`` as DICOM: ``.dcm`` by name, the other image
    extensions never, any other name by content (PACS exports name files ``IM00001``)."""
    extension = _extension(path)
    if extension == DICOM_EXTENSION:
        return True
    if extension in IMAGE_EXTENSIONS:
        return False
    return sniff_dicom(path)


def patient_id(filename: str) -> str:
    """Patient id from a file name: ``person12_virus_40.jpeg`` -> ``person12``; valid UTF-8
    text (:func:`display_path`) even for a name that is not."""
    stem = display_path(Path(filename).stem)
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def _label_and_split(parent: Path) -> tuple[int | None, str | None]:
    label = label_index(parent.name)
    if label is None:
        return None, None
    split = parent.parent.name.lower()
    return label, split if split in SPLIT_NAMES else None


def _not_read(exc: OSError, what: str) -> str:
    """The error a row gives for a folder or entry the walk could not read."""
    if isinstance(exc, PermissionError):
        return f"permission denied: {what} not read"
    return f"{exc.strerror or type(exc).__name__}: {what} not read"


def _entries(folder: str) -> tuple[list[os.DirEntry], OSError | None]:
    """The entries of ``folder`` and the error that stopped listing it (None: all listed)."""
    entries: list[os.DirEntry] = []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:  # listing can fail part-way: keep what came before
                entries.append(entry)
    except OSError as exc:
        return entries, exc
    return entries, None


def _sniffed_dicom(entry: os.DirEntry) -> bool:
    """A file with no or an unknown extension that holds DICOM. OSError when it cannot be
    opened (the walk reports it rather than guess)."""
    if entry.name.upper() == DICOMDIR_NAME or not entry.is_file():  # broken links, FIFOs
        return False
    if entry.stat().st_size < DICOM_HEAD_BYTES:
        return False
    with open(entry.path, "rb") as handle:
        return is_dicom_bytes(handle.read(DICOM_HEAD_BYTES))


def _walk(root: Path, exclude: frozenset[str] = frozenset()) -> tuple[list[str], Discovery]:
    """Sorted paths of the image files under root (iterative scandir, no directory symlinks
    followed), and what else the walk found (its records are left to :func:`scan`)."""
    found: list[str] = []
    skipped = 0
    unreadable: list[tuple[str, str]] = []
    excluded: list[str] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        entries, error = _entries(folder)
        if error is not None:
            if folder == str(root) and not entries:
                raise UserInputError(f"cannot read {root}: {_not_read(error, 'folder')}")
            unreadable.append((folder, _not_read(error, "folder")))
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name in _SKIPPED_DIRS:
                continue
            if exclude and os.path.abspath(entry.path) in exclude:
                excluded.append(entry.path)
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                # Broken symlinks and unreadable files named as images are kept: a later stage
                # reports them as errors instead of silently dropping them. Other names are
                # images when their content is DICOM.
                elif _extension(name) in IMAGE_EXTENSIONS or _sniffed_dicom(entry):
                    found.append(entry.path)
                else:
                    skipped += 1
            except OSError as exc:  # stat or open refused: its kind is unknown, say so
                unreadable.append((entry.path, _not_read(exc, "file")))
    found.sort()
    unreadable.sort()
    return found, Discovery([], skipped, unreadable, sorted(excluded))


def scan(
    root: str | os.PathLike[str], exclude: Collection[str | os.PathLike[str]] = ()
) -> Discovery:
    """Walk ``root`` (a folder, or a single image file) once into sorted records, leaving out
    the paths in ``exclude`` (and everything under those that are folders)."""
    root = Path(root)
    if root.is_file():
        paths, walked = [str(root)], Discovery([], 0)
    elif root.is_dir():
        paths, walked = _walk(root, frozenset(os.path.abspath(p) for p in exclude))
    else:
        raise NotFoundError(f"no such file or folder: {root}")
    records = []
    parents: dict[str, tuple[int | None, str | None]] = {}
    for path in paths:
        parent, name = os.path.split(path)
        if parent not in parents:
            parents[parent] = _label_and_split(Path(parent).absolute())
        label, split = parents[parent]
        records.append(Record(path=path, label=label, split=split, patient=patient_id(name)))
    return Discovery(records, walked.skipped, walked.unreadable, walked.excluded)


def discover(root: str | os.PathLike[str]) -> list[Record]:
    """Image records under ``root``, sorted by path. Folders that could not be read get one
    warning each (stages that report per file use :func:`scan`)."""
    found = scan(root)
    for path, reason in found.unreadable:
        to_stderr(f"cxr-fast: warning: {display_path(path)}: {reason}")
    return found.records


def unlabelled(records: Sequence[Record]) -> list[Record]:
    """``records`` with label and split cleared: a folder taken as an unlabelled archive whatever
    its layout, for stages that must not see labels (``adapt``)."""
    return [replace(r, label=None, split=None) for r in records]


class NoImagesError(UserInputError):
    """A folder (or list of inputs) without a single file cxr-fast reads."""


def require_images(records: list[Record], where: str, purpose: str = "") -> list[Record]:
    """``records``, or :class:`NoImagesError` naming ``where`` when there are none: the one
    "no images" message every command gives."""
    if not records:
        raise NoImagesError(f"no {IMAGE_NAMES} images under {where}{purpose}")
    return records


def paths_sha256(root: str | os.PathLike[str], records: Sequence[Record]) -> str:
    """SHA-256 of the records' sorted paths relative to ``root``: which files a run or a
    calibration saw, independent of where the folder is mounted."""
    paths = sorted(os.path.relpath(r.path, root) for r in records)
    # fsencode: the bytes of the names, also of those that are not UTF-8.
    return hashlib.sha256(os.fsencode("\n".join(paths))).hexdigest()
