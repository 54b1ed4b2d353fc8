"""Dataset doctor: counts, patients, leakage between splits, image sizes and unreadable files."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from cxr_fast.choices import DEFAULT_WORKERS
from cxr_fast.data.decode import ImageReadError, ImageSkipped, probe
from cxr_fast.data.discover import IMAGE_NAMES, Record, display_path, scan
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.text import plural

UNLABELED = "unlabeled"
NO_SPLIT = "-"


@dataclass
class CheckReport:
    """What ``cxr-fast data check`` found; :meth:`to_dict` is its JSON form."""

    root: str
    images: int
    skipped_files: int
    counts: dict[str, dict[str, int]]
    patients: dict[str, int]
    leaked_patients: dict[str, list[str]]
    checked: int
    width_range: tuple[int, int] | None
    height_range: tuple[int, int] | None
    unreadable: list[dict[str, str]] = field(default_factory=list)
    # Folders (or entries) the walk could not read: their files are unknown, so not checked.
    not_read: list[dict[str, str]] = field(default_factory=list)
    # Image names that are not UTF-8: read all the same, shown with \xNN escapes.
    odd_names: int = 0
    # DICOM objects with no image to score (reports, plans): `score` writes skipped rows for
    # them, so they are counted here the same way, not as unreadable.
    not_images: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return {
            "root": self.root,
            "images": self.images,
            "skipped_files": self.skipped_files,
            "counts": self.counts,
            "patients": self.patients,
            "leaked_patients": self.leaked_patients,
            "checked": self.checked,
            "width_range": list(self.width_range) if self.width_range else None,
            "height_range": list(self.height_range) if self.height_range else None,
            "unreadable": self.unreadable,
            "not_read": self.not_read,
            "odd_names": self.odd_names,
            "not_images": self.not_images,
        }

    @property
    def has_problems(self) -> bool:
        """Leakage, unreadable files or folders: what makes ``data check`` exit 1."""
        return bool(self.leaked_patients or self.unreadable or self.not_read)


def _probe_one(path: str) -> tuple[str, tuple[int, int] | None, str | None, bool]:
    """(path, size or None, reason, skipped): skipped for DICOM objects that are no image."""
    try:
        return path, probe(path), None, False
    except ImageSkipped as exc:
        return path, None, exc.reason, True
    except ImageReadError as exc:
        return path, None, exc.reason, False


def _split_name(record: Record) -> str:
    return record.split or NO_SPLIT


def _class_name(record: Record) -> str:
    return UNLABELED if record.label is None else CLASS_NAMES[record.label]


def _leakage(records: Sequence[Record]) -> dict[str, list[str]]:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        splits_of[record.patient].add(_split_name(record))
    leaked: dict[str, list[str]] = defaultdict(list)
    for patient, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            leaked["+".join(sorted(splits))].append(patient)
    return dict(leaked)


def check_dataset(
    root: str | os.PathLike[str],
    *,
    sample: int | None = None,
    workers: int = DEFAULT_WORKERS,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Scan ``root`` and decode every image (or an evenly spaced ``sample`` of them)."""
    discovery = scan(root)
    records = discovery.records
    counts: dict[str, Counter] = defaultdict(Counter)
    patients: dict[str, set[str]] = defaultdict(set)
    for record in records:
        counts[_split_name(record)][_class_name(record)] += 1
        patients[_split_name(record)].add(record.patient)

    paths = [r.path for r in records]
    if sample is not None and 0 < sample < len(paths):
        step = len(paths) / sample
        paths = [paths[int(i * step)] for i in range(sample)]
    widths: list[int] = []
    heights: list[int] = []
    unreadable = []
    not_images = []
    # Decoding dominates on large trees; chunks keep the inter-process overhead small.
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, size, error, skipped in pool.map(_probe_one, paths, chunksize=32):
            if skipped:
                not_images.append({"path": display_path(path), "reason": error or "skipped"})
            elif size is None:
                unreadable.append({"path": display_path(path), "error": error or "unreadable"})
            else:
                widths.append(size[0])
                heights.append(size[1])
            if progress is not None:
                progress(1)

    return CheckReport(
        root=display_path(str(root)),
        images=len(records),
        skipped_files=discovery.skipped,
        counts={split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        patients={split: len(p) for split, p in sorted(patients.items())},
        leaked_patients=_leakage(records),
        checked=len(paths),
        width_range=(min(widths), max(widths)) if widths else None,
        height_range=(min(heights), max(heights)) if heights else None,
        unreadable=unreadable,
        not_read=[{"path": display_path(p), "error": e} for p, e in discovery.unreadable],
        odd_names=discovery.odd_names,
        not_images=not_images,
    )


def format_report(report: CheckReport, max_listed: int = 20) -> str:
    """Human-readable text of a :class:`CheckReport`."""
    columns = [*CLASS_NAMES, UNLABELED]
    present = [c for c in columns if any(c in counts for counts in report.counts.values())]
    lines = [f"{report.root}: {plural(report.images, 'image')}", ""]
    header = (
        f"{'split':<8}" + "".join(f"{c:>12}" for c in present) + f"{'total':>10}{'patients':>10}"
    )
    lines.append(header)
    for split, counts in report.counts.items():
        row = f"{split:<8}" + "".join(f"{counts.get(c, 0):>12}" for c in present)
        lines.append(row + f"{sum(counts.values()):>10}{report.patients[split]:>10}")
    lines.append("")
    if report.leaked_patients:
        for splits, ids in report.leaked_patients.items():
            shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
            lines.append(f"LEAKAGE: {plural(len(ids), 'patient')} in {splits}: {shown}")
    else:
        lines.append("leakage: no patient appears in more than one split")
    if report.width_range and report.height_range:
        (w0, w1), (h0, h1) = report.width_range, report.height_range
        lines.append(f"image size ({report.checked} decoded): width {w0}-{w1}, height {h0}-{h1}")
    if report.not_images:
        lines.append(
            f"skipped: {plural(len(report.not_images), 'DICOM object')} with no image to score "
            "(as score skips them)"
        )
        lines.extend(
            f"  {item['path']}: {item['reason']}" for item in report.not_images[:max_listed]
        )
        if len(report.not_images) > max_listed:
            lines.append(f"  ... and {len(report.not_images) - max_listed} more (see --json)")
    lines.append(f"unreadable: {len(report.unreadable)} of {report.checked} decoded")
    for bad in report.unreadable[:max_listed]:
        lines.append(f"  {bad['path']}: {bad['error']}")
    if len(report.unreadable) > max_listed:
        lines.append(f"  ... and {len(report.unreadable) - max_listed} more (see --json)")
    for bad in report.not_read[:max_listed]:
        lines.append(f"not read: {bad['path']}: {bad['error']}")
    if len(report.not_read) > max_listed:
        lines.append(f"not read: ... and {len(report.not_read) - max_listed} more (see --json)")
    if report.odd_names:
        lines.append(
            f"names not UTF-8: {plural(report.odd_names, 'image')} (read; shown with \\xNN "
            "escapes, score keeps the real name in path_bytes)"
        )
    if report.skipped_files:
        lines.append(
            f"left out: {plural(report.skipped_files, 'file')}: not images by name or content"
        )
    return "\n".join(lines)


def nothing_to_check(report: CheckReport) -> str | None:
    """The one line ``data check`` prints instead of a report when ROOT holds no images, with
    the layout it expects; None when there are some."""
    if report.images:
        return None
    others = [plural(report.skipped_files, "other file")] if report.skipped_files else []
    others += [f"{plural(len(report.not_read), 'path')} not read"] if report.not_read else []
    skipped = f" ({', '.join(others)})" if others else ""
    return (
        f"no {IMAGE_NAMES} images under {report.root}{skipped}: expected the Kaggle layout "
        "ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/ or any folder of images"
    )


def none_readable(report: CheckReport) -> str | None:
    """A hint when every decoded image was unreadable; None otherwise."""
    pictures = report.checked - len(report.not_images)  # DICOM reports are not failed reads
    if not pictures or len(report.unreadable) < pictures:
        return None
    return (
        f"none of the {plural(report.checked, 'decoded image')} could be read: see the "
        "reasons above (a wrong folder, or files that are not X-ray images?)"
    )
