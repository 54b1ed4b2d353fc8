"""File discovery: walk a folder once into records (path, label, split, patient).

The Kaggle layout ``{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` is recognised at any level the
user points at (the dataset root, one split, or one class folder) because labels and splits are
read from each file's own parent folders, not from positions relative to the root. Any other
tree is an unlabeled archive.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.labels import label_index

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg", ".png", ".dcm"})
IMAGE_NAMES = ".jpeg/.jpg/.png/.dcm"  # IMAGE_EXTENSIONS as messages spell them
JPEG_EXTENSIONS: frozenset[str] = frozenset({".jpeg", ".jpg"})
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_SKIPPED_DIRS = frozenset({"__MACOSX"})

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
    """What a walk found: image records (sorted by path) and the number of non-image files."""

    records: list[Record]
    skipped: int


def patient_id(filename: str) -> str:
    """Patient id from a file name: ``person12_virus_40.jpeg`` -> ``person12``."""
    stem = Path(filename).stem
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


def _walk(root: Path) -> tuple[list[str], int]:
    """Paths of image files under root (iterative scandir, no directory symlinks followed)."""
    found: list[str] = []
    skipped = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name in _SKIPPED_DIRS:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                # Broken symlinks and unreadable files are kept: a later stage reports them as
                # errors instead of silently dropping them.
                elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(entry.path)
                else:
                    skipped += 1
    found.sort()
    return found, skipped


def scan(root: str | os.PathLike[str]) -> Discovery:
    """Walk ``root`` (a folder, or a single image file) once into sorted records."""
    root = Path(root)
    if root.is_file():
        paths, skipped = [str(root)], 0
    elif root.is_dir():
        paths, skipped = _walk(root)
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
    return Discovery(records=records, skipped=skipped)


def discover(root: str | os.PathLike[str]) -> list[Record]:
    """Image records under ``root``, sorted by path."""
    return scan(root).records


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
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()
