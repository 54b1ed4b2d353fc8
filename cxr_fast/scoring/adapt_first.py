"""``score --adapt``: adapt the run to the archive being scored, then score the archive with
the adapted run (two passes over the films).

The first pass is ``cxr-fast adapt`` with its defaults on the films score itself discovered
(its own outputs left out, labels cleared), into the run folder ``OUT.adapted/`` beside the
output: the Parquet metadata names it, and the user can score or evaluate with it again. A
``--resume`` reuses that folder when it was adapted from the same run on the same files (the
rows kept were scored with it), and refuses otherwise; ``--overwrite`` adapts again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cxr_fast.configs import AdaptConfig
from cxr_fast.data.discover import Discovery, paths_sha256, require_images
from cxr_fast.errors import UserInputError
from cxr_fast.run_folder import CONFIG_FILE, MODEL_FILE, read_json, sha256
from cxr_fast.scoring.score_config import ScoreConfig
from cxr_fast.text import plural

if TYPE_CHECKING:
    from cxr_fast.scoring.head_start import HeadStart

# score's ScoreSummary (named so, not imported: score imports this module).
Summary = TypeVar("Summary")


def adapted_dir(out: Path) -> Path:
    """Where ``score --adapt --out out`` keeps its adapted run: ``out.adapted`` beside it."""
    return out.with_name(out.name + ".adapted")


def score_adapted(
    config: ScoreConfig,
    score: Callable[..., Summary],
    discovery: Discovery,
    progress: Callable[[int], None] | None = None,
    head: HeadStart | None = None,
    set_total: Callable[[int], None] | None = None,
) -> Summary:
    """Adapt ``config.model`` to the films ``discovery`` found under ``config.archive`` (or
    reuse the adapted run of an interrupted ``--resume``), then ``score(config, progress, None,
    set_total)`` the archive with the adapted run; its summary says so. ``set_total`` counts
    both passes; ``head`` is stopped and its films dropped."""
    records = require_images(discovery.records, str(config.archive))
    if head is not None:
        # Else it decodes the second pass's films on the cores the first one needs, and that
        # pass's rate would count from their decoding.
        head.take()
    adapted = adapted_dir(config.out)
    counted = [0]

    def total(n: int) -> None:
        counted[0] = n
        if set_total is not None:
            set_total(n)

    record, reused, export_line = _adapted_run(config, adapted, records, progress, total)
    first = counted[0]
    summary = score(
        replace(config, model=adapted),
        progress,
        None,
        None if set_total is None else lambda n: set_total(first + n),
    )
    lines = _lines(config, adapted, record, reused)
    return replace(summary, notes=(*lines, *([export_line] if export_line else []), *summary.notes))


def _adapted_run(
    config: ScoreConfig,
    adapted: Path,
    records: list,
    progress: Callable[[int], None] | None,
    set_total: Callable[[int], None],
) -> tuple[dict, bool, str | None]:
    """(the adapted run's adaptation record, whether an earlier run's was reused, the line
    saying which export of it was built)."""
    if (adapted / MODEL_FILE).exists() and not config.overwrite:
        if not config.resume:
            raise UserInputError(
                f"{adapted} already holds the run an earlier score --adapt adapted: pass "
                "--resume to reuse it or --overwrite to adapt again"
            )
        return _reusable(config, adapted, records), True, None
    from cxr_fast.adapt.adapt_stage import run_adapt

    adapt = AdaptConfig(
        config.model,
        config.archive.resolve(),  # as score's discovery: the films' root in the record
        adapted,
        overwrite=config.overwrite,
        device=config.device,
        workers=config.workers,
    )
    result = run_adapt(
        adapt, log=lambda _: None, progress=progress, set_total=set_total, found=records
    )
    return result.adaptation, False, result.export_line


def _reusable(config: ScoreConfig, adapted: Path, records: list) -> dict:
    """The adaptation record of ``adapted`` when it was made from ``config.model`` on these
    files of this archive; else one line."""
    record = (read_json(adapted / CONFIG_FILE) if (adapted / CONFIG_FILE).is_file() else {}).get(
        "adaptation"
    ) or {}
    films = record.get("films") or {}
    archive = config.archive.resolve()
    same = (
        films.get("root") == str(archive)
        and films.get("paths_sha256") == paths_sha256(archive, records)
        and record.get("source_model_sha256") == sha256(config.model / MODEL_FILE)
        and record.get("method") == AdaptConfig.method
    )
    if not same:
        raise UserInputError(
            f"{adapted} was not adapted from {config.model} on these files of {config.archive}: "
            "pass --overwrite to adapt again and score from the start"
        )
    return record


def _lines(config: ScoreConfig, adapted: Path, record: dict, reused: bool) -> tuple[str, ...]:
    """The summary's account of the first pass: what was adapted on, where it went, the
    threshold before and after."""
    n = plural(record["films"]["n"], "film")
    how = (
        f"reused {adapted}, adapted to these {n} by an earlier score --adapt"
        if reused
        else f"adapted {config.model} to the archive's {n} ({record['method']}; labels not "
        f"read) -> {adapted}"
    )
    return (
        f"two passes: {how}; then scored the archive with the adapted run",
        f"threshold {record['threshold_before']:.4f} -> {record['threshold_after']:.4f} "
        "(site adaptation)",
    )
