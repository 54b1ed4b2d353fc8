"""Where a scoring run writes, so that a run whose outputs sit inside its archive never scores
them (``score ARCHIVE --cam-dir ARCHIVE/cams`` and a rerun read the overlays as X-rays).

Free of torch and pyarrow: the scorer's head start (:mod:`cxr_fast.scoring.head_start`)
discovers the archive with the same exclusions before either is imported.
"""

from __future__ import annotations

from pathlib import Path


def metrics_path_for(out: Path) -> Path:
    """``preds.parquet`` -> ``preds.metrics.json``."""
    return out.with_name(out.stem + ".metrics.json")


def own_outputs(out: Path, cam_dir: Path | None) -> list[Path]:
    """The paths a run with ``--out out`` and ``--cam-dir cam_dir`` writes (resolved, as the
    archive is): the Parquet file (or the folder of parts), its temporary file, the metrics
    and the overlay folder. The staging folder ``.NAME.parts`` is hidden, which discovery
    skips anyway."""
    paths = [out, out.with_name(out.name + ".tmp"), metrics_path_for(out)]
    if cam_dir is not None:
        paths.append(cam_dir)
    return [path.resolve() for path in paths]
