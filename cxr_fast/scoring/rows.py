"""The prediction rows of one scored batch: what ``score`` and ``listen`` write, alike."""

from __future__ import annotations

from collections.abc import Sequence

from cxr_fast.data.batch import Batch
from cxr_fast.data.discover import Record
from cxr_fast.inference import sigmoid
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.scoring.gating import gated_verdict, judge_batch
from cxr_fast.scoring.model import ScoringModel
from cxr_fast.scoring.parquet_out import STATUS_ERROR
from cxr_fast.scoring.row_info import STATUS_SKIPPED, info_columns


def batch_rows(
    batch: Batch, records: Sequence[Record], model: ScoringModel, accept_ood: bool = False
) -> list[dict]:
    """One prediction row (keys of :data:`cxr_fast.scoring.parquet_out.SCHEMA`) per file of
    ``batch``: scored films with the gate's verdict, then the files that failed (error) or
    were skipped; ``records`` is the list the batch's positions index."""
    rows = []
    threshold = model.threshold

    def row(position: int) -> dict:
        label = records[position].label
        return {
            "path": records[position].path,
            "threshold": threshold,
            "label": None if label is None else CLASS_NAMES[label],
        }

    if batch.x is not None:
        probs = sigmoid(model.logits(batch.x).cpu().numpy())
        index = batch.index.tolist()
        judged = judge_batch(model, batch.x, [batch.info.get(p) for p in index])
        for position, prob, (width, height), judgement in zip(
            index, probs, batch.sizes, judged, strict=True
        ):
            info = batch.info.get(position)
            warnings = (info or {}).get("warnings")
            rows.append(
                row(position)
                | {"width": width, "height": height}
                | info_columns(info)
                | gated_verdict(float(prob), threshold, judgement, accept_ood, warnings)
            )
    failed = [(p, r, STATUS_ERROR) for p, r in batch.errors]
    for position, reason, status in failed + [(p, r, STATUS_SKIPPED) for p, r in batch.skipped]:
        rows.append(
            row(position)
            | {"status": status, "error": reason}
            | info_columns(batch.info.get(position))
        )
    return rows
