"""``run_score``: walk an archive once, score every file, write Parquet (and metrics)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from cxr_fast.choices import (
    PROJECTION_MODALITIES,
    SCORE_BATCH_SIZE,
)
from cxr_fast.data.collecting_loader import CollectingLoader
from cxr_fast.data.discover import Discovery, Record, display_path, require_images, scan
from cxr_fast.data.file_item import FileItem
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.data.shard import shard_range
from cxr_fast.device import resolve_device
from cxr_fast.distributed import (
    DistContext,
    barrier,
    context_from_env,
    start,
    stop,
    use_device,
    workers_per_rank,
)
from cxr_fast.errors import Interrupted, OutputError, UserInputError
from cxr_fast.export.source import cam_run_for
from cxr_fast.gate import STATUS_NOT_CXR
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.messages import to_stderr
from cxr_fast.metrics import binary_metrics, headline, import_in_background
from cxr_fast.outputs import creatable_folder, exclusive_output, writable_file
from cxr_fast.run_folder import atomic_write_json
from cxr_fast.scoring import identity
from cxr_fast.scoring.adapt_first import adapted_dir, score_adapted
from cxr_fast.scoring.gating import gate_settings
from cxr_fast.scoring.head_start import HeadStart
from cxr_fast.scoring.job import PartStats, global_top, merge_parts
from cxr_fast.scoring.model import ScoringModel, load_scoring_model
from cxr_fast.scoring.own_outputs import metrics_path_for, own_outputs
from cxr_fast.scoring.parquet_out import (
    STATUS_ERROR,
    STATUS_OK,
    ChunkedParquetWriter,
    metadata_json,
    staging_dir,
)
from cxr_fast.scoring.row_info import count_skipped, count_status
from cxr_fast.scoring.rows import batch_rows as _rows
from cxr_fast.scoring.score_config import ScoreConfig, shard_from_text
from cxr_fast.scoring.threads import choose_threads, measure_costs
from cxr_fast.scoring.wait_policy import is_passive
from cxr_fast.text import plural, rate
from cxr_fast.versions import versions

if TYPE_CHECKING:
    from cxr_fast.explain.explainer import Explainer

# Written by rank 0 of a torchrun job into OUT/ once every part is complete.
SUCCESS_FILE = "_SUCCESS"
# "_": pyarrow.dataset (and Spark) skip such files, so OUT/ still reads back as the parts alone.
JOB_METRICS = "_metrics.json"
METRIC_COLUMNS = ["prob_pneumonia", "label", "status"]
SCORING_PACKAGES = (
    *("torch", "torchvision", "nvidia-dali-cuda120", "pyarrow"),
    *("pydicom", "python-gdcm", "imagecodecs", "pillow"),  # the DICOM decoders
)


@dataclass(frozen=True)
class ScoreSummary:
    """How a scoring run ended."""

    out: Path
    rows: int
    ok: int
    errors: int
    resumed: int
    scored: int
    seconds: float
    backend: str
    loader: str
    metrics_path: Path | None
    cams: int = 0  # overlays written by --cam-dir
    loader_fallback: str | None = None  # why the run left DALI for PIL part-way
    skipped: int = 0  # non-image DICOM objects and --skip-views views (not errors)
    # False on torchrun ranks other than 0: rank 0's summary is the whole job's.
    is_main: bool = True
    cam_dir: Path | None = None  # where --cam-dir overlays went
    backend_choice: str | None = None  # why --backend auto scored with this model
    not_cxr: int = 0  # films the input gate refused (no verdict)
    left_out: int = 0  # files discovery found to be no images, by name or content
    own_outputs: tuple[str, ...] = ()  # this run's outputs under the archive, not scored
    notes: tuple[str, ...] = ()  # further lines of the summary (--dicomweb's source and SRs)

    def summary(self) -> str:
        """Rows by status, speed, the metrics' headline and the overlays ("" on ranks other
        than 0: rank 0 prints the whole job's)."""
        if not self.is_main:
            return ""
        resumed = f", {self.resumed:,} kept from before" if self.resumed else ""
        lines = [
            f"{plural(self.rows, 'row')} ({self.ok:,} ok, {self.not_cxr:,} not_cxr, "
            f"{self.skipped:,} skipped, {plural(self.errors, 'error')}{resumed}) -> {self.out}",
            f"{plural(self.scored, 'image')} in {self.seconds:.1f} s: "
            f"{rate(self.scored, self.seconds)} ({self.backend}, {self.loader} loader)",
        ]
        if self.backend_choice:
            lines.append(f"backend: {self.backend_choice}")
        if self.left_out:
            lines.append(f"{plural(self.left_out, 'file')} left out: not images by name or content")
        if self.own_outputs:
            shown = ", ".join(display_path(path) for path in self.own_outputs)
            lines.append(f"not scored: this run's own outputs under the archive ({shown})")
        if self.metrics_path:
            lines.append(headline(json.loads(self.metrics_path.read_text())))
            lines.append(f"metrics: {self.metrics_path}")
        if self.cam_dir is not None:
            lines.append(f"Grad-CAM overlays: {self.cams} in {self.cam_dir} (column cam_path)")
        return "\n".join([*lines, *self.notes])

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else float("nan")


def parse_shard(text: str | None, env: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """``I/N`` from ``--shard``, else RANK/WORLD_SIZE when launched by torchrun with N > 1."""
    if text is None:
        ctx = context_from_env(env)
        return (ctx.rank, ctx.world_size) if ctx.enabled else None
    return shard_from_text(text)


def output_path(out: Path, shard: tuple[int, int] | None) -> Path:
    """The Parquet file a run writes: ``out`` itself, or ``out/part-IIIII.parquet``."""
    return out if shard is None else out / f"part-{shard[0]:05d}.parquet"


def resume_command(config: ScoreConfig, env: Mapping[str, str] = os.environ) -> str:
    """The command that finishes an interrupted run: the same model, archive and output, and
    the options the partial output's identity depends on, with ``--resume``."""
    import shlex

    q = shlex.quote
    torchrun = context_from_env(env).enabled
    parts = ["cxr-fast", "score", q(str(config.archive)), "--model", q(str(config.model))]
    parts += ["--out", q(str(config.out))]
    if config.backend != "auto":
        parts += ["--backend", config.backend]
    if config.shard is not None and not torchrun:
        parts += ["--shard", f"{config.shard[0]}/{config.shard[1]}"]
    if config.skip_views:
        parts += ["--skip-views", ",".join(config.skip_views)]
    if config.tta:
        parts.append("--tta")
    if config.precision != "auto":
        parts += ["--precision", config.precision]
    if config.accept_ood:
        parts.append("--accept-ood")
    if tuple(config.modalities) != PROJECTION_MODALITIES:
        parts += ["--modalities", ",".join(config.modalities)]
    if config.cam_dir is not None:
        parts += ["--cam-dir", q(str(config.cam_dir)), "--cam-top", str(config.cam_top)]
        if config.cam_run is not None:
            parts += ["--cam-run", q(str(config.cam_run))]
        if config.cam_layer is not None:
            parts += ["--cam-layer", q(config.cam_layer)]
        if config.cam_method != "gradcam":
            parts += ["--cam-method", config.cam_method]
    command = " ".join([*parts, "--resume"])
    return f"the same torchrun launch of {command}" if torchrun else command


def _check_outputs(config: ScoreConfig) -> None:
    """Every output location writable, before the model loads: a read-only --cam-dir must not
    fail after the whole archive is scored. Creates nothing (a run refused later, for its
    model say, leaves no folder behind)."""
    out = output_path(config.out, config.shard)
    if out.is_dir():
        writable_file(out)  # its one-line "is a folder"
    creatable_folder(out.parent)
    if config.cam_dir is not None:
        creatable_folder(config.cam_dir, "--cam-dir")


def _prepare(out: Path, resume: bool, overwrite: bool) -> None:
    writable_file(out)
    partial = staging_dir(out)
    if overwrite:
        shutil.rmtree(partial, ignore_errors=True)
        out.unlink(missing_ok=True)
        return
    if out.exists():
        if resume:
            raise UserInputError(f"{out} is already complete: nothing to resume")
        raise UserInputError(f"{out} exists: pass --overwrite to replace it")
    if partial.exists() and not resume:
        raise UserInputError(
            f"{out} has partial results from an interrupted run: pass --resume to finish "
            "them or --overwrite to start over"
        )


def _write_cams(
    explainer: Explainer, top: list[tuple[str, float]], cam_dir: Path
) -> dict[str, str]:
    """Overlays for ``top`` (path, prob) into ``cam_dir``; path -> overlay file."""
    from cxr_fast.explain.explainer import explain_files

    outcomes = explain_files(explainer, [path for path, _ in top], cam_dir)
    return {o.source: str(o.out) for o in outcomes if o.out is not None}


def batch_size_for(config: ScoreConfig, device: torch.device) -> int:
    """``--batch-size``, else the device's default."""
    return config.batch_size or SCORE_BATCH_SIZE.get(device.type, SCORE_BATCH_SIZE["cuda"])


def model_threads(
    config: ScoreConfig, device: torch.device, model: ScoringModel, paths: list[str]
) -> int:
    """``--threads``; else on the CPU with worker processes, all cores when OpenMP waits
    passively (wait_policy.py: measured best or equal for every model in docs/benchmarks.md),
    else all cores or those the workers leave, whichever side is the bottleneck on a few
    sample images (threads.py)."""
    cores = torch.get_num_threads()
    if config.threads is not None:
        return config.threads
    if device.type != "cpu" or config.workers == 0 or cores <= 1 or is_passive():
        return cores
    costs = measure_costs(paths, model.contract, model.logits)
    return cores if costs is None else choose_threads(*costs, cores, config.workers)


def run_score(
    config: ScoreConfig,
    progress: Callable[[int], None] | None = None,
    head: HeadStart | None = None,
    set_total: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Score every image under ``config.archive`` into Parquet; see :class:`ScoreConfig`.
    ``head``: films decoded while this process started (:mod:`cxr_fast.scoring.head_start`),
    used where they are what this run would decode; the caller closes it. ``set_total(n)``: the
    files this process will score, once discovery and --resume have settled it (a bar's total).
    With ``config.dicomweb`` the server's instances are fetched first and scored as files."""
    if config.dicomweb is not None:
        from cxr_fast.network.dicomweb_score import score_dicomweb

        return score_dicomweb(config, run_score, progress, set_total)
    previous = torch.get_num_threads()
    try:
        if config.adapt:  # before the first pass: an output that would be refused
            _check_outputs(config)
            if not config.overwrite:  # refuses only: the output's lock is not held yet
                _prepare(config.out, config.resume, overwrite=False)
            found = _discovery(config, head)
            return score_adapted(config, _run_score, found, progress, head, set_total)
        return _run_score(config, progress, head, set_total)
    finally:
        torch.set_num_threads(previous)


def counts_and_metrics(table: pa.Table, model: ScoringModel) -> tuple[int, int, dict | None]:
    """(rows, ok rows, metrics of the labeled ok rows or None), column-wise in Arrow rather
    than as Python lists of the whole archive."""
    ok_mask = pc.equal(table["status"], STATUS_OK)
    ok = pc.sum(ok_mask).as_py() or 0
    scored = table.filter(pc.and_(ok_mask, pc.is_valid(table["label"])))
    if not scored.num_rows:
        return table.num_rows, ok, None
    y = pc.equal(scored["label"], CLASS_NAMES[1]).to_numpy(zero_copy_only=False).astype(np.int64)
    probs = scored["prob_pneumonia"].to_numpy(zero_copy_only=False)
    metrics = binary_metrics(y, probs, model.threshold)
    skipped = count_skipped(table)
    not_cxr = count_status(table, STATUS_NOT_CXR)
    errors = table.num_rows - ok - skipped - not_cxr
    return table.num_rows, ok, {"errors": errors, "skipped": skipped, "not_cxr": not_cxr, **metrics}


def _finish_job(
    out: Path, ctx: DistContext, files: int, model: ScoringModel, part: PartStats
) -> tuple[Path | None, PartStats, tuple[int, int, int, int]]:
    """After every rank's part is published (a barrier), rank 0 checks that the parts hold
    exactly the archive's files and writes the merged metrics.json, then _SUCCESS, last: a
    reader that sees _SUCCESS sees a whole result. Returns the metrics file, every rank's
    ``part`` merged and, on rank 0, the job's (rows, ok, skipped, not_cxr)."""
    job = merge_parts(ctx, part)
    barrier(ctx)
    metrics_file = None
    counts = (0, 0, 0, 0)
    if ctx.is_main:
        parts = [output_path(out, (rank, ctx.world_size)) for rank in range(ctx.world_size)]
        missing = [str(part) for part in parts if not part.is_file()]
        if missing:
            raise ValueError(f"parts missing after every rank finished: {', '.join(missing)}")
        table = ds.dataset([str(p) for p in parts], format="parquet").to_table(METRIC_COLUMNS)
        rows, ok, metrics = counts_and_metrics(table, model)
        counts = (rows, ok, count_skipped(table), count_status(table, STATUS_NOT_CXR))
        if rows != files:
            raise ValueError(f"the parts hold {rows} rows for the archive's {files} files")
        if metrics is not None:
            metrics_file = out / JOB_METRICS
            atomic_write_json(
                {"predictions": str(out), "parts": len(parts), **metrics}, metrics_file
            )
        atomic_write_json(
            {"rows": rows, "parts": len(parts), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            out / SUCCESS_FILE,
        )
    stop(ctx)
    return metrics_file, job, counts


def _open_writer(config: ScoreConfig, model: ScoringModel, out: Path) -> ChunkedParquetWriter:
    """The Parquet writer for ``out``, its file metadata naming model, contract and archive."""
    metadata = {
        **identity.model_metadata(model),
        "cxr_fast_backend_choice": model.choice,
        "cxr_fast_gate": None
        if model.gate is None
        else {
            **gate_settings(model, config.accept_ood),
            "fitted": None if model.gate.content is None else model.gate.content.fitted,
        },
        "cxr_fast_archive": str(config.archive.resolve()),
        # score --adapt: the run it adapted to this archive and scored with (its own metadata
        # records the adaptation)
        "cxr_fast_adapted_run": str(adapted_dir(config.out).resolve()) if config.adapt else None,
        "cxr_fast_shard": list(config.shard) if config.shard else None,
        "cxr_fast_versions": versions(SCORING_PACKAGES),
        "cxr_fast_created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return ChunkedParquetWriter(
        out,
        metadata_json(metadata),
        rows_per_chunk=config.rows_per_chunk,
        chunk_seconds=config.chunk_seconds,
    )


def _batch_source(
    config: ScoreConfig,
    records,
    todo: list[int],
    model: ScoringModel,
    device: torch.device,
    decoded: list[FileItem],
) -> CollectingLoader:
    """The collecting loader over the files still to score, with the model's contract; the
    ``decoded`` ones (the first of ``todo``) are scored first."""
    # Under torchrun the host's workers are shared by its ranks.
    workers = workers_per_rank(context_from_env(), config.workers)
    spec = LoaderSpec(records, model.contract, batch_size_for(config, device), workers, device)
    return make_scoring_loader(
        spec, config.loader, positions=todo, skip_views=config.skip_views, decoded=decoded
    )


def _head_items(head: HeadStart | None, run: _Setup, todo: list[int]) -> list[FileItem]:
    """The films the head start decoded, where this run would decode them alike: the model's
    contract, the same discovery, and the first of the files to score."""
    if head is None:
        return []
    items = head.take()
    same = head.contract == run.model.contract and head.records is run.records
    return items if same and todo[: len(items)] == [item.position for item in items] else []


def _score_batches(
    batches: CollectingLoader,
    records,
    model: ScoringModel,
    writer: ChunkedParquetWriter,
    progress: Callable[[int], None] | None,
    interrupted: Callable[[int], str],
    started: float | None = None,
    accept_ood: bool = False,
) -> float:
    """Rows for every batch into ``writer``; the seconds since ``started`` (a perf_counter
    time; default: now, the first batch's request). On Ctrl-C the rows so far are flushed for
    --resume and :class:`Interrupted` says ``interrupted(rows kept)``."""
    started = time.perf_counter() if started is None else started
    try:
        for batch in batches:
            for row in _rows(batch, records, model, accept_ood):
                writer.add(row)
            if progress is not None:
                progress(batch.files)
    except KeyboardInterrupt:
        writer.flush()  # every row scored so far is kept for --resume
        raise Interrupted(interrupted(len(writer.done_paths()))) from None
    return time.perf_counter() - started


def _coordinate(
    config: ScoreConfig, device: torch.device
) -> tuple[DistContext, bool, torch.device]:
    """(context, whether this run is one rank of a torchrun job, the device to score on).
    Launched by torchrun with the environment's slice, the ranks finish together (_SUCCESS)."""
    ctx = context_from_env()
    coordinated = ctx.enabled and config.shard == (ctx.rank, ctx.world_size)
    # Under torchrun every rank scores on its own GPU, made current (TensorRT binds to it),
    # whether it reads the environment's slice or an explicit --shard.
    if ctx.enabled:
        device = use_device(ctx, device)
    if coordinated:
        start(ctx, torch.device("cpu"))  # gloo: only barriers, whatever scores the images
    return ctx, coordinated, device


def _explainer(config: ScoreConfig, device: torch.device, model: ScoringModel) -> Explainer | None:
    """The CAM explainer for --cam-dir (None without it), opened before any scoring; its
    captions give ``model``'s probability, the one in the rows."""
    # Before any scoring, so a wrong --cam-run or --cam-layer fails in a second, not after the
    # archive.
    if config.cam_dir is None:
        return None
    # Imported here: the explain stage brings matplotlib, which a run without --cam-dir
    # skips.
    from cxr_fast.explain.explainer import Explainer

    return Explainer(
        cam_run_for(config.model, config.cam_run),
        device=str(device),
        layer=config.cam_layer,
        method=config.cam_method,
        scoring=model,
        accept_ood=True,  # the rows' gate has spoken: only its ok rows get overlays
    )


@dataclass(frozen=True)
class _Setup:
    """What a scoring run works from, settled before its first row is written."""

    started: float
    ctx: DistContext
    coordinated: bool
    device: torch.device
    model: ScoringModel
    explainer: Explainer | None
    records: list[Record]
    positions: list[int]
    out: Path
    made_with: dict
    resuming: bool
    # What discovery found besides the records: folders not read get error rows (shard 0's).
    discovery: Discovery


@dataclass(frozen=True)
class _Scored:
    """What scoring the files still to do left behind (the output file is published)."""

    todo: list[int]
    done: set[str]
    seconds: float
    cam_paths: dict[str, str] | None
    loader: str
    loader_fallback: str | None


def _set_up(config: ScoreConfig, head: HeadStart | None, held: contextlib.ExitStack) -> _Setup:
    """Coordination, model, explainer, records and output checked, before anything is written;
    the output's lock is taken into ``held`` (released when the run ends)."""
    started = time.perf_counter()
    ctx, coordinated, device = _coordinate(config, resolve_device(config.device))
    model = load_scoring_model(config.model, config.backend, device, config.tta, config.precision)
    if model.gate is not None:
        model = replace(model, gate=replace(model.gate, modalities=tuple(config.modalities)))
    explainer = _explainer(config, device, model)
    # Rows name files by absolute path under the resolved root, however ARCHIVE was typed: the
    # same file is the same row in every run, part and resume (the README's Parquet policy).
    found = _discovery(config, head)
    records = require_images(found.records, _where(config.archive, found))
    positions = list(range(len(records)))
    if config.shard is not None:
        positions = list(shard_range(len(records), *config.shard))
    out = output_path(config.out, config.shard)
    writable_file(out)
    # Before _prepare: a second --overwrite or --resume on this output would delete or publish
    # the chunks under the run that holds it.
    held.enter_context(exclusive_output(out))
    _prepare(out, config.resume, config.overwrite)
    made_with = identity.identity(model, config.archive, config.shard, config.accept_ood)
    resuming = config.resume and staging_dir(out).exists()
    if resuming:  # before anything is written: a refused resume leaves the partial output as is
        identity.check(staging_dir(out), made_with, out)
    if coordinated and ctx.is_main:  # a stale marker must not vouch for this job's parts
        (config.out / SUCCESS_FILE).unlink(missing_ok=True)
        (config.out / JOB_METRICS).unlink(missing_ok=True)
    return _Setup(
        started,
        ctx,
        coordinated,
        device,
        model,
        explainer,
        records,
        positions,
        out,
        made_with,
        resuming,
        found,
    )


def _discovery(config: ScoreConfig, head: HeadStart | None) -> Discovery:
    """The archive's files without this run's own outputs: the head start's walk when there
    is one (made with the same exclusions), else a new one."""
    if head is not None:
        return head.discovery or Discovery(head.records, 0)
    return scan(config.archive.resolve(), exclude=own_outputs(config.out, config.cam_dir))


def _where(archive: Path, found: Discovery) -> str:
    """The archive as the "no images" message names it, with what could not be read."""
    if not found.unreadable:
        return str(archive)
    path, reason = found.unreadable[0]
    first = f"{display_path(path)}: {reason}"
    return f"{archive} ({plural(len(found.unreadable), 'path')} not read, e.g. {first})"


def _unreadable_rows(run: _Setup, shard: tuple[int, int] | None, done: set[str]) -> list[dict]:
    """One error row per folder (or entry) discovery could not read, so that no file under it
    is lost without a trace; written by the first shard only, once across resumes."""
    if shard is not None and shard[0] != 0:
        return []
    threshold = run.model.threshold
    return [
        {"path": path, "threshold": threshold, "status": STATUS_ERROR, "error": reason}
        for path, reason in run.discovery.unreadable
        if path not in done
    ]


# A write that fails for want of space (or of quota): the user frees some, then resumes.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _score(
    config: ScoreConfig,
    run: _Setup,
    progress: Callable[[int], None] | None,
    head: HeadStart | None = None,
    set_total: Callable[[int], None] | None = None,
) -> _Scored:
    """Score the files not yet done into the output, write the CAMs, and publish the file. A
    full disk is one line: the rows kept and the command that finishes the run."""
    writer = None
    try:
        writer = _open_writer(config, run.model, run.out)
        return _score_into(writer, config, run, progress, head, set_total)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        kept = len(writer.done_paths()) if writer is not None else 0
        raise OutputError(
            f"the disk is full ({os.strerror(exc.errno)}) writing {run.out}: {kept:,} of "
            f"{len(run.positions):,} rows are kept in {staging_dir(run.out)}; free some space, "
            f"then continue with: {resume_command(config)}"
        ) from None


def _score_into(
    writer: ChunkedParquetWriter,
    config: ScoreConfig,
    run: _Setup,
    progress: Callable[[int], None] | None,
    head: HeadStart | None,
    set_total: Callable[[int], None] | None = None,
) -> _Scored:
    """:func:`_score`'s work, through ``writer``."""
    model, records = run.model, run.records
    if not run.resuming:
        identity.record(writer.staging, run.made_with)
    dropped = writer.drop_unreadable() if config.resume else 0
    if dropped:
        their = "its" if dropped == 1 else "their"
        to_stderr(
            f"cxr-fast: warning: {plural(dropped, 'chunk')} unreadable: {their} rows are scored "
            "again"
        )
    done = writer.done_paths() if config.resume else set()
    for row in _unreadable_rows(run, config.shard, done):
        writer.add(row)
    todo = [p for p in run.positions if records[p].path not in done]
    if set_total is not None:
        set_total(len(todo))
    if run.ctx.is_main and any(records[p].label is not None for p in todo):
        import_in_background()  # the metrics at the end need scikit-learn: load it meanwhile
    torch.set_num_threads(model_threads(config, run.device, model, [records[p].path for p in todo]))
    # Taken last: the head start decodes while the model loads and is timed.
    decoded = _head_items(head, run, todo)
    batches = _batch_source(config, records, todo, model, run.device, decoded)
    seconds = _score_batches(
        batches,
        records,
        model,
        writer,
        progress,
        lambda kept: (
            f"{kept:,} of {len(run.positions):,} rows kept in {writer.staging}; "
            f"continue with: {resume_command(config)}"
        ),
        # The rate counts the films decoded before the loop: from the head start's first decode.
        started=head.started if head is not None and decoded else None,
        accept_ood=config.accept_ood,
    )
    cam_paths = None
    if run.explainer is not None and config.cam_dir is not None:
        top = writer.top_k(config.cam_top)
        if run.coordinated:  # the most suspicious of the whole archive, not of each part
            top = global_top(run.ctx, top, config.cam_top)
        cam_paths = _write_cams(run.explainer, top, config.cam_dir)
    # The loader that decoded this run's images (not the one asked for), and why it changed.
    use = batches.use
    writer.set_metadata("cxr_fast_loader", use.name)
    writer.set_metadata("cxr_fast_loader_fallback", use.fallback)
    writer.set_metadata("cxr_fast_not_cxr", writer.count_status(STATUS_NOT_CXR))
    writer.finish(cam_paths)
    return _Scored(todo, done, seconds, cam_paths, use.name, use.fallback)


def _summarize(config: ScoreConfig, run: _Setup, scored: _Scored) -> ScoreSummary:
    """Counts and metrics from the published output (a torchrun job's, on rank 0), summarized."""
    out, model = run.out, run.model
    # Counts and metrics from the published file (resumed rows included).
    table = pq.read_table(out, columns=METRIC_COLUMNS)
    rows, ok, metrics = counts_and_metrics(table, model)
    skipped = count_skipped(table)
    not_cxr = count_status(table, STATUS_NOT_CXR)
    metrics_file = None
    if metrics is not None and config.shard is None:
        metrics_file = metrics_path_for(out)
        atomic_write_json({"predictions": str(out), **metrics}, metrics_file)
    part = PartStats(
        scored=len(scored.todo),
        resumed=len(scored.done),
        seconds=scored.seconds if scored.todo else time.perf_counter() - run.started,
        cams=len(scored.cam_paths or {}),
        loader=scored.loader,
        loader_fallback=scored.loader_fallback,
    )
    if run.coordinated:  # rank 0 reports the whole job: every part, one summary
        files = len(run.records) + len(run.discovery.unreadable)
        metrics_file, part, (rows, ok, skipped, not_cxr) = _finish_job(
            config.out, run.ctx, files, model, part
        )
        out = config.out
    return ScoreSummary(
        out=out,
        rows=rows,
        ok=ok,
        errors=rows - ok - skipped - not_cxr,
        not_cxr=not_cxr,
        resumed=part.resumed,
        scored=part.scored,
        seconds=part.seconds,
        backend=model.backend,
        backend_choice=model.choice,
        loader=part.loader,
        metrics_path=metrics_file,
        cams=part.cams,
        loader_fallback=part.loader_fallback,
        skipped=skipped,
        is_main=not run.coordinated or run.ctx.is_main,
        cam_dir=config.cam_dir,
        left_out=run.discovery.skipped,
        own_outputs=tuple(run.discovery.excluded),
    )


def _run_score(
    config: ScoreConfig,
    progress: Callable[[int], None] | None,
    head: HeadStart | None,
    set_total: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Set up, score and summarize one run (see :func:`run_score`)."""
    _check_outputs(config)
    with contextlib.ExitStack() as held:  # the output's lock, for the whole run
        run = _set_up(config, head, held)
        scored = _score(config, run, progress, head, set_total)
        return _summarize(config, run, scored)
