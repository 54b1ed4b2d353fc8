"""The input gate: every path that gives a verdict asks it first whether a film is a frontal
chest radiograph at all. A film it refuses gets ``status = "not_cxr"`` and no verdict.

Three checks, cheapest first: the DICOM header (:mod:`.metadata`), the pixels (:mod:`.pixels`:
near-constant, colour) and the content (:mod:`.content`: the distance of the film's appearance
from the training films', fitted when training ends and stored in ``model.pt`` and in every
export's sidecar). All three read the model's input batch or the file's header, never a
backend's output, so eager and exported models gate a film identically.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.decode import ImageReadError
from cxr_fast.gate.appearance import describe, grey_histogram, unit_pixels
from cxr_fast.gate.content import ContentGate
from cxr_fast.gate.metadata import PROJECTION_MODALITIES, metadata_reason
from cxr_fast.gate.pixels import colour_reason, span_reason

STATUS_NOT_CXR = "not_cxr"
GATE_KEY = "gate"  # in model.pt meta and export sidecars


class NotChestXrayError(ImageReadError):
    """A film the input gate refuses, where a command answers one film at a time (serve's 422,
    explain's error line): the reason says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, f"does not look like a chest X-ray ({reason})")


@dataclass(frozen=True)
class Judgement:
    """The gate's word on one film: ``reason`` None means it may be scored."""

    ood_score: float | None
    reason: str | None

    @property
    def refused(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class InputGate:
    """The checks for one model: its contract and its fitted content check (None for a run
    trained before the gate: then only the header and pixel checks apply)."""

    contract: PreprocessContract
    content: ContentGate | None
    modalities: tuple[str, ...] = PROJECTION_MODALITIES

    @classmethod
    def from_meta(
        cls,
        meta: dict,
        contract: PreprocessContract,
        modalities: Collection[str] = PROJECTION_MODALITIES,
    ) -> InputGate:
        """The gate stored in ``meta`` (``model.pt`` meta or an export's sidecar)."""
        stored = meta.get(GATE_KEY)
        content = None if not stored else ContentGate.from_dict(stored)
        return cls(contract, content, tuple(modalities))

    @property
    def threshold(self) -> float | None:
        return None if self.content is None else self.content.threshold

    def judge(self, x: torch.Tensor, infos: Sequence[dict | None]) -> list[Judgement]:
        """One :class:`Judgement` per image of the model input ``x`` [N,1,S,S]; ``infos``: what
        reading each file found (DICOM identifiers, ``chroma``), aligned with ``x``."""
        unit = unit_pixels(x, self.contract)
        # One histogram per film serves the span check and the descriptor.
        histogram = grey_histogram(unit.reshape(len(unit), -1))
        spans = span_reason(unit, histogram)
        scores = [None] * len(unit)
        if self.content is not None:
            scores = [float(s) for s in self.content.distance(describe(unit, histogram))]
        out = []
        for score, span, info in zip(scores, spans, infos, strict=True):
            reason = metadata_reason(info, self.modalities) or span or colour_reason(info)
            if reason is None and score is not None and score > self.content.threshold:
                reason = (
                    f"unlike the training films: out-of-distribution score {score:.1f} > "
                    f"{self.content.threshold:.1f}"
                )
            out.append(Judgement(score, reason))
        return out


__all__ = [
    "GATE_KEY",
    "STATUS_NOT_CXR",
    "ContentGate",
    "InputGate",
    "Judgement",
    "NotChestXrayError",
]
