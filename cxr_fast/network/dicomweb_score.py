"""``cxr-fast score --dicomweb URL``: what a DICOMweb server holds, scored as a folder is.

The instances QIDO-RS finds are fetched by WADO-RS into a spool folder beside the output and
scored there by the same ``run_score`` that scores a folder: the same loader, input gate, model
and rows. Then each row's path becomes its instance's WADO-RS URL, an instance that could not
be fetched becomes an error row, and the file is published; with ``--store-sr`` a Structured
Report answering each assessed film goes back to the server by STOW-RS. The spool is removed
at the end, whatever happens.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom

from cxr_fast.errors import Interrupted, OutputError, UserInputError
from cxr_fast.gate import STATUS_NOT_CXR
from cxr_fast.network.dicomweb import (
    Instance,
    Unfetched,
    fetch_instances,
    find_instances,
    open_client,
    store_instances,
)
from cxr_fast.network.sr_template import template_for
from cxr_fast.outputs import exclusive_output, writable_file
from cxr_fast.run_folder import atomic_write
from cxr_fast.scoring.parquet_out import STATUS_ERROR, STATUS_OK
from cxr_fast.text import plural

# Rows answered by an SR: a scored film, or one the gate refused ("not assessed", and why).
SR_STATUSES = (STATUS_OK, STATUS_NOT_CXR)


def spool_dir(out: Path) -> Path:
    """The hidden folder beside ``out`` that holds the fetched instances while they are scored."""
    return out.parent / f".{out.name}.dicomweb"


def score_dicomweb(
    config: Any,
    run_score: Callable[..., Any],
    progress: Callable[[int], None] | None = None,
    set_total: Callable[[int], None] | None = None,
) -> Any:
    """Score the instances at ``config.dicomweb`` (a ScoreConfig) with ``run_score`` (the
    folder scorer, handed in so that this module need not import it); its ScoreSummary."""
    url = config.dicomweb.rstrip("/")
    out = writable_file(config.out)
    with exclusive_output(out):
        if out.exists() and not config.overwrite:
            raise UserInputError(f"{out} exists: pass --overwrite to replace it")
        client = open_client(url)
        instances = find_instances(client, config.study)
        if not instances:
            among = f" in {plural(len(config.study), 'study')}" if config.study else ""
            raise UserInputError(f"--dicomweb {url}: QIDO-RS found no instances{among}")
        spool = spool_dir(out)
        shutil.rmtree(spool, ignore_errors=True)
        try:
            return _score_spooled(config, run_score, client, instances, spool, progress, set_total)
        finally:
            shutil.rmtree(spool, ignore_errors=True)


def _score_spooled(config, run_score, client, instances, spool, progress, set_total) -> Any:
    """Fetch, score, publish and (with --store-sr) answer, with the instances spooled."""
    url = config.dicomweb.rstrip("/")
    fetched, unfetched = fetch_instances(client, instances, spool / "films")
    if not fetched:
        raise UserInputError(
            f"--dicomweb {url}: none of the {plural(len(instances), 'instance')} could be "
            f"fetched ({unfetched[0].reason})"
        )
    inner = replace(
        config, archive=spool / "films", out=spool / "preds.parquet", overwrite=True,
        dicomweb=None, study=(), store_sr=False,
    )  # fmt: skip
    try:
        summary = run_score(inner, progress, None, set_total)
    except Interrupted:
        raise Interrupted("interrupted: nothing was written; run the command again") from None
    table = _as_served(pq.read_table(inner.out), url, config.study, fetched, unfetched)
    atomic_write(config.out, lambda handle: pq.write_table(table, handle))
    notes = [
        f"source: {url} ({plural(len(instances), 'instance')} found by QIDO-RS, "
        f"{len(unfetched):,} not fetched: error rows)"
    ]
    if config.store_sr:
        notes.append(_answer(client, table, url, fetched, config.out))
    return replace(
        summary,
        out=config.out,
        rows=summary.rows + len(unfetched),
        errors=summary.errors + len(unfetched),
        metrics_path=None,
        notes=tuple(notes),
    )


def _as_served(
    table: pa.Table,
    url: str,
    studies: tuple[str, ...],
    fetched: dict[Path, Instance],
    unfetched: list[Unfetched],
) -> pa.Table:
    """The spooled run's rows as the server's: WADO-RS URLs for paths, an error row for each
    instance not fetched, the archive in the metadata the URL."""
    names = {str(path): instance.url(url) for path, instance in fetched.items()}
    index = table.schema.get_field_index("path")
    paths = pa.array([names.get(p, p) for p in table["path"].to_pylist()], pa.string())
    table = table.set_column(index, table.schema.field(index), paths)
    threshold = json.loads(table.schema.metadata[b"cxr_fast_threshold"])
    errors = [
        {
            "path": miss.instance.url(url),
            "threshold": threshold,
            "status": STATUS_ERROR,
            "error": miss.reason,
            "patient_id": miss.instance.patient,
            "study_instance_uid": miss.instance.study,
            "series_instance_uid": miss.instance.series,
            "sop_instance_uid": miss.instance.sop,
            "modality": miss.instance.modality,
        }
        for miss in unfetched
    ]
    table = pa.concat_tables([table, pa.Table.from_pylist(errors, schema=table.schema)])
    metadata = dict(table.schema.metadata)
    metadata[b"cxr_fast_archive"] = json.dumps(url).encode()
    metadata[b"cxr_fast_dicomweb_studies"] = json.dumps(list(studies) or None).encode()
    return table.replace_schema_metadata(metadata)


def _answer(client, table: pa.Table, url: str, fetched: dict[Path, Instance], out: Path) -> str:
    """STOW-RS an SR for each assessed row; the summary's line. A refusal is one line."""
    identity = json.loads(table.schema.metadata[b"cxr_fast_algorithm"])
    files = {instance.url(url): path for path, instance in fetched.items()}
    reports = [
        template_for(identity).report(
            pydicom.dcmread(files[row["path"]], stop_before_pixels=True), row
        )
        for row in table.to_pylist()
        if row["status"] in SR_STATUSES and row["path"] in files
    ]
    refused = store_instances(client, reports)
    if refused:
        raise OutputError(
            f"the rows are in {out}, but the server refused {len(refused):,} of "
            f"{plural(len(reports), 'structured report')}, e.g. {refused[0]}"
        )
    return f"{plural(len(reports), 'structured report')} stored by STOW-RS"
