"""The train stage's last step: the host's best verified export into ``RUN/export/``.

It is what ``cxr-fast export RUN --format auto`` builds, through the same export stage, so that a
plain ``cxr-fast score ARCHIVE --model RUN`` picks it by itself (``--backend auto``) instead of
running the eager model. Training has succeeded by the time it runs: an export that fails or is
not verified (an int8 accuracy check, a missing runtime) costs one warning line, never the run,
which then scores with the eager model as before.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from cxr_fast.errors import CxrFastError, Interrupted
from cxr_fast.export.common import ExportResult
from cxr_fast.messages import Log, to_stdout
from cxr_fast.training.config import TrainConfig


def export_after_training(
    run_dir: Path, config: TrainConfig, log: Log = to_stdout
) -> ExportResult | None:
    """Build ``config.export`` ("auto"; "none": nothing) for the trained run in ``run_dir`` and
    log one line saying what was written, kept or skipped and why. Returns the new export, or
    None when none was written."""
    return export_run_folder(run_dir, config.export, config.arch, config.device, log)


def export_run_folder(
    run_dir: Path, export: str, arch: str, device: str, log: Log = to_stdout
) -> ExportResult | None:
    """:func:`export_after_training` for any finished run folder (a trained or an adapted one)
    of architecture ``arch``, built for ``device``."""
    if export == "none":
        return None
    from cxr_fast.export.export_stage import ExportConfig, run_export

    run = shlex.quote(str(run_dir))
    started = time.perf_counter()
    what = "the auto export"
    try:
        target, what = _auto_target(run_dir, arch, device)
        if _up_to_date(run_dir, target):
            log(f"export: {target.name} kept (already verified for this model.pt)")
            return None
        log(f"export: building {what} for this host into {target.parent} (--export none skips)")
        # overwrite: the file at the run's own default path can only be a stale export of an
        # earlier model.pt of this run (retrained or resumed), which nothing can score with.
        result = run_export(ExportConfig(run_dir, "auto", device=device, overwrite=True))
    except KeyboardInterrupt:
        raise Interrupted(
            f"export interrupted; the run in {run_dir} is trained and scores with the eager "
            f"model; `cxr-fast export {run} --format auto` builds the export"
        ) from None
    except Exception as exc:  # any failure: the run is trained and usable (module docstring)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, CxrFastError):
            message = f"{type(exc).__name__}: {message}"
        log(
            f"warning: export skipped: {what} failed ({message}); the run is trained and "
            f"`score` uses the eager model (`cxr-fast export {run} --format auto` retries)"
        )
        return None
    log(describe(result, time.perf_counter() - started))
    return result


def describe(result: ExportResult, seconds: float) -> str:
    """One line: the file, that it was verified, its measured speed and the time it took."""
    speed = result.speed or {}
    rate = ""
    if "speedup_vs_eager" in speed:
        # The ratio `score --backend auto` ranks by: a median of paired rounds, steadier on a
        # busy host than the two images/s medians it is shown with.
        rate = (
            f"; {speed['speedup_vs_eager']:.2f}x eager {speed['eager_precision']} on this host, "
            f"{speed['images_per_second']:,.0f} img/s"
        )
        if speed["speedup_vs_eager"] <= 1.0:
            rate += ": not faster, so `score` keeps the eager model"
    accuracy = next((n for n in result.notes if n.startswith("int8: ROC-AUC")), None)
    return (
        f"export: {result.path.name} ({result.format} {result.precision}, verified{rate}) "
        f"in {seconds:.0f} s -> {result.path}"
        + (f"\nexport: {accuracy.removeprefix('int8: ')}" if accuracy else "")
    )


def _auto_target(run_dir: Path, arch: str, device: str) -> tuple[Path, str]:
    """(the file ``export --format auto`` writes for this run on this host, its description)."""
    from cxr_fast.device import resolve_device
    from cxr_fast.export.auto import auto_export
    from cxr_fast.export.common import default_out_path

    fmt, precision, _ = auto_export(arch, resolve_device(device))
    return default_out_path(run_dir, fmt, precision), f"{fmt} {precision}"


def _up_to_date(run_dir: Path, target: Path) -> bool:
    """Whether ``target`` is already an export of the run's current model.pt (a resumed run
    that had nothing left to train)."""
    from cxr_fast.export.sidecar import read_sidecar
    from cxr_fast.run_folder import MODEL_FILE, sha256

    if not target.is_file():
        return False
    try:
        return read_sidecar(target).get("source_sha256") == sha256(run_dir / MODEL_FILE)
    except CxrFastError:
        return False
