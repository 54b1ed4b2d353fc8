"""The input gate applied to a scored batch: one verdict per film, or a refusal (not_cxr)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cxr_fast.gate import STATUS_NOT_CXR, Judgement
from cxr_fast.labels import verdict
from cxr_fast.scoring.model import ScoringModel
from cxr_fast.scoring.parquet_out import STATUS_OK

ACCEPTED_NOTE = "not a chest X-ray by the input gate, scored by --accept-ood"


def judge_batch(
    model: ScoringModel, x: torch.Tensor, infos: Sequence[dict | None]
) -> list[Judgement]:
    """The gate's judgement of each film of ``x`` (all pass where the model has no gate)."""
    if model.gate is None:
        return [Judgement(None, None)] * len(infos)
    return model.gate.judge(x, infos)


def gate_settings(model: ScoringModel, accept_ood: bool) -> dict | None:
    """How a run gates its rows (None without a gate): what resume checks and the Parquet
    metadata records."""
    if model.gate is None:
        return None
    return {
        "threshold": model.gate.threshold,
        "modalities": list(model.gate.modalities),
        "accept_ood": accept_ood,
    }


def gated_verdict(
    prob: float,
    threshold: float,
    judgement: Judgement,
    accept_ood: bool = False,
    warnings: str | None = None,
) -> dict:
    """A film's probability, verdict, status, error, ``ood_score`` and warnings: refused films
    get status ``not_cxr``, no probability and no verdict, unless ``accept_ood``, which scores
    them with the refusal in ``warnings``."""
    fields = {"ood_score": judgement.ood_score, "warnings": warnings}
    if judgement.refused and not accept_ood:
        return {
            **fields,
            "prob_pneumonia": None,
            "pred": None,
            "status": STATUS_NOT_CXR,
            "error": judgement.reason,
        }
    if judgement.refused:
        note = f"{ACCEPTED_NOTE}: {judgement.reason}"
        fields["warnings"] = f"{warnings}; {note}" if warnings else note
    return {
        **fields,
        "prob_pneumonia": prob,
        "pred": verdict(prob, threshold),
        "status": STATUS_OK,
        "error": None,
    }
