"""What ``cxr-fast score`` can be asked to do: :class:`ScoreConfig`, each option declared once.

A module of its own, free of PyTorch, so the command line builds its options from it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr_fast.choices import (
    BACKENDS,
    CHUNK_SECONDS,
    MIN_ADAPT_FILMS,
    PROJECTION_MODALITIES,
    ROWS_PER_CHUNK,
    SCORE_BATCH_SIZE,
    accept_ood_option,
    cam_layer_option,
    cam_method_option,
    device_option,
    loader_option,
    precision_option,
    tta_option,
    workers_option,
)
from cxr_fast.data.shard import shard_range
from cxr_fast.data.views import parse_views
from cxr_fast.errors import UserInputError
from cxr_fast.options import check_options, option


def shard_from_text(text: str) -> tuple[int, int]:
    """``--shard 0/4`` -> (0, 4), checked."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserInputError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    shard_range(0, index, count)  # validates
    return index, count


def parse_modalities(text: str) -> tuple[str, ...]:
    """``CR,DX`` -> ("CR", "DX"); an empty list is a mistake."""
    found = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not found:
        raise UserInputError("--modalities: give at least one modality, e.g. CR,DX")
    return found


_BATCH_DEFAULT = ", ".join(f"{n} on {kind}" for kind, n in SCORE_BATCH_SIZE.items())


@dataclass(frozen=True)
class ScoreConfig:
    """What ``cxr-fast score`` was asked to do."""

    # None: the instances of --dicomweb instead
    archive: Path | None = option(
        argument=True, optional=True, exists=True, help="Folder of images to score."
    )
    model: Path = option(
        exists=True,
        required=True,
        section="model",
        help="A run folder (eager PyTorch) or a file written by `cxr-fast export`.",
    )
    out: Path = option(
        required=True,
        section="output",
        help="Parquet file to write (a folder of part files with --shard or torchrun).",
    )
    adapt: bool = option(
        False,
        section="model",
        help="Two passes, for an archive from one site: first adapt --model (a run folder) to "
        "the archive's films as `cxr-fast adapt` does with its defaults (labels never read; at "
        f"least {MIN_ADAPT_FILMS} films) into the run folder OUT.adapted/, then score the "
        "archive with that adapted run.",
    )
    backend: str = option(
        "auto",
        choices=BACKENDS,
        section="model",
        help="auto: for a run folder its fastest export in RUN/export/ verified for this device "
        "and made from its model.pt (`cxr-fast export RUN --format auto`), else the eager model "
        "at --precision; for a file, the export's own format.",
    )
    # None: SCORE_BATCH_SIZE for the device
    batch_size: int | None = option(
        None, min=1, default_text=_BATCH_DEFAULT, section="run", help="Images per model batch."
    )
    loader: str = loader_option()
    device: str = device_option()
    workers: int = workers_option(
        help="DALI threads or DataLoader worker processes (under torchrun: the host's, shared "
        "by its processes)."
    )
    resume: bool = option(
        False,
        section="output",
        help="Keep the rows an interrupted run already wrote and score only the rest.",
    )
    overwrite: bool = option(False, section="output", help="Replace an existing output.")
    shard: tuple[int, int] | None = option(
        None,
        parse=shard_from_text,
        metavar="I/N",
        default_text="RANK/WORLD_SIZE under torchrun, else everything",
        section="run",
        help="Score only slice I of N (0-based) into OUT/part-IIIII.parquet.",
    )
    rows_per_chunk: int = option(
        ROWS_PER_CHUNK,
        name="--chunk-rows",
        min=1,
        section="output",
        help="Write the rows scored so far to disk every this many rows (what --resume keeps "
        "after a kill) ...",
    )
    # a chunk is written at least this often
    chunk_seconds: float = option(
        CHUNK_SECONDS,
        min=0,
        section="output",
        help="... or every this many seconds, whichever comes first.",
    )
    # model threads on the CPU; None: chosen by model_threads
    threads: int | None = option(
        None,
        min=1,
        section="run",
        default_text="all cores, with OpenMP's passive wait, which score sets unless "
        "OMP_WAIT_POLICY is set; under OMP_WAIT_POLICY=ACTIVE measured: all cores, or the cores "
        "the workers leave when decoding is the bottleneck",
        help="CPU threads for the model.",
    )
    # Grad-CAM overlays of the cam_top most suspicious images
    cam_dir: Path | None = option(
        None,
        file_okay=False,
        section="output",
        help="Write Grad-CAM overlays of the --cam-top most suspicious images (highest "
        "probability) here and add a cam_path column.",
    )
    cam_top: int = option(
        20,
        min=1,
        section="output",
        help="How many overlays --cam-dir gets (of the whole archive under torchrun; per part "
        "with --shard).",
    )
    # the run folder for Grad-CAM when ``model`` is an export
    cam_run: Path | None = option(
        None,
        exists=True,
        section="output",
        help="Run folder for the overlays when --model is an export kept outside RUN/export/.",
    )
    cam_layer: str | None = cam_layer_option(
        "Grad-CAM target layer for --cam-dir, as explain's --layer.  [default: the "
        "architecture's last convolutional block]"
    )
    cam_method: str = cam_method_option("Grad-CAM method for --cam-dir, as explain's --method.")
    # DICOM ViewPosition values not scored (status skipped)
    skip_views: tuple[str, ...] = option(
        (),
        parse=parse_views,
        metavar="V1,V2",
        default_text="score every view; the view_position column records it",
        section="data",
        help="DICOM ViewPosition values not to score (e.g. LATERAL,LL): rows with status skipped.",
    )
    tta: bool = tta_option()  # run folders: three views, three times the cost
    precision: str = precision_option()  # eager models: inference_precision
    accept_ood: bool = accept_ood_option()  # score films the gate refuses (flagged)
    # DICOM Modality values accepted
    modalities: tuple[str, ...] = option(
        PROJECTION_MODALITIES,
        parse=parse_modalities,
        metavar="M1,M2",
        section="data",
        help="DICOM Modality values the input gate accepts (other modalities get status not_cxr).",
    )

    # a DICOMweb server's root, scored instead of ARCHIVE
    dicomweb: str | None = option(
        None,
        metavar="URL",
        section="data",
        help="Score the instances a DICOMweb server holds (found with QIDO-RS, fetched with "
        "WADO-RS) instead of ARCHIVE; each row's path is its instance's WADO-RS URL.",
    )
    study: tuple[str, ...] = option(
        (),
        multiple=True,
        metavar="UID",
        section="data",
        help="With --dicomweb: only this study (Study Instance UID; repeat for more).",
    )
    store_sr: bool = option(
        False,
        section="output",
        help="With --dicomweb: store a DICOM Structured Report answering each scored film back "
        "on the server (STOW-RS), in the film's study.",
    )

    def __post_init__(self) -> None:
        check_options(self)
        _check_source(self)
        _check_adapt(self)


# What --dicomweb cannot be combined with (yet): its rows come from a fetch made for one run.
_NOT_WITH_DICOMWEB = {
    "resume": "--resume",
    "shard": "--shard",
    "cam_dir": "--cam-dir",
    "adapt": "--adapt",
}


def _check_source(config: ScoreConfig) -> None:
    """One line unless exactly one of ARCHIVE and --dicomweb says what to score."""
    if config.dicomweb is None:
        if config.archive is None:
            raise UserInputError("give the folder to score (ARCHIVE) or --dicomweb URL")
        if config.study or config.store_sr:
            raise UserInputError("--study and --store-sr need --dicomweb URL")
        return
    if config.archive is not None:
        raise UserInputError("give ARCHIVE or --dicomweb URL, not both")
    if not config.dicomweb.startswith(("http://", "https://")):
        raise UserInputError(
            f"--dicomweb must be an http:// or https:// URL, got {config.dicomweb!r}"
        )
    for name, option_text in _NOT_WITH_DICOMWEB.items():
        if getattr(config, name):
            raise UserInputError(f"{option_text} cannot be used with --dicomweb")


def _check_adapt(config: ScoreConfig) -> None:
    """One line for what --adapt cannot take: an export (its weights and threshold are sealed)
    and a slice of the archive (each part would adapt to its own films)."""
    if not config.adapt:
        return
    if not config.model.is_dir():
        raise UserInputError(
            f"--adapt needs a run folder as --model, not an export ({config.model}): adapt the "
            "run it was exported from"
        )
    if config.shard is not None:
        raise UserInputError(
            "--adapt cannot be used with --shard or torchrun: adapt once with `cxr-fast adapt "
            "RUN --data ARCHIVE --out RUN2`, then score the parts with --model RUN2"
        )
