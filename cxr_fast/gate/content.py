"""The content check: how far a film's appearance lies from the training films'.

A Mahalanobis distance on the appearance descriptor (:mod:`cxr_fast.gate.appearance`), with a
Ledoit-Wolf shrunk covariance of the training films. The films are fitted as the model saw them
in training, as they are and under the training augmentation (zoom, shift, rotation, contrast,
aspect), so that a real chest film framed a little differently is still at home. The threshold
is the ``quantile`` of out-of-fold distances (patient-level folds: each film measured against a
fit that never saw its patient), so at most ``1 - quantile`` of the training films exceed it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxr_fast.errors import UserInputError
from cxr_fast.gate.appearance import DESCRIPTOR_VERSION

GATE_VERSION = 1
# Share of the training films' out-of-fold distances under the threshold.
QUANTILE = 0.995
FOLDS = 5
# Fewer films than this make no covariance worth the name (the test fixtures hold 39).
MIN_FILMS = 30


@dataclass(frozen=True)
class ContentGate:
    """A fitted content check: ``distance(descriptors) > threshold`` is out of distribution."""

    location: np.ndarray  # [D]
    precision: np.ndarray  # [D, D]
    threshold: float
    fitted: dict  # what it was fitted on: films, views, quantile, folds, out-of-fold refusals

    def distance(self, descriptors: np.ndarray) -> np.ndarray:
        """Mahalanobis distance [N] of descriptors [N, D] from the training films."""
        centred = np.asarray(descriptors, dtype=np.float64) - self.location
        squared = np.einsum("nd,de,ne->n", centred, self.precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))

    def to_dict(self) -> dict:
        """Plain JSON (arrays as base64 float32): for ``model.pt`` meta and export sidecars."""
        return {
            "version": GATE_VERSION,
            "descriptor_version": DESCRIPTOR_VERSION,
            "method": "Mahalanobis distance (Ledoit-Wolf covariance) on the appearance descriptor",
            "threshold": self.threshold,
            "dims": int(self.location.shape[0]),
            "location": _encode(self.location),
            "precision": _encode(self.precision),
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ContentGate:
        """The gate stored by :meth:`to_dict`; a gate of another version is refused."""
        try:
            if data["version"] != GATE_VERSION or data["descriptor_version"] != DESCRIPTOR_VERSION:
                raise UserInputError(
                    f"the stored input gate is version {data['version']}/"
                    f"{data['descriptor_version']}, this cxr-fast reads {GATE_VERSION}/"
                    f"{DESCRIPTOR_VERSION}: fit it again with `cxr-fast ood-fit`"
                )
            dims = int(data["dims"])
            location = _decode(data["location"]).reshape(dims)
            precision = _decode(data["precision"]).reshape(dims, dims)
            return cls(location, precision, float(data["threshold"]), dict(data["fitted"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"the stored input gate is damaged ({exc!r})") from None


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def _fit_covariance(descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    fit = LedoitWolf().fit(descriptors)
    return fit.location_, fit.precision_


def patient_fold_ids(groups: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per film such that a patient's films share one fold."""
    patients = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[i]: rank % folds for rank, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def fit_content_gate(
    views: list[np.ndarray], groups: Sequence[str], quantile: float = QUANTILE, seed: int = 0
) -> ContentGate:
    """Fit on descriptor arrays ``views`` (each [N, D], one row per training film: the films as
    they are, then augmented views of the same films in the same order) whose films belong to
    patients ``groups``."""
    if len(groups) < MIN_FILMS:
        raise UserInputError(
            f"the input gate needs at least {MIN_FILMS} training films to fit, got {len(groups)}"
        )
    folds = patient_fold_ids(groups, min(FOLDS, len(set(groups))), seed)
    stacked = np.concatenate(views)
    stacked_folds = np.tile(folds, len(views))
    out_of_fold = np.empty(len(stacked))
    for fold in np.unique(folds):
        held = stacked_folds == fold
        location, precision = _fit_covariance(stacked[~held])
        out_of_fold[held] = ContentGate(location, precision, 0.0, {}).distance(stacked[held])
    threshold = float(np.quantile(out_of_fold, quantile))
    location, precision = _fit_covariance(stacked)
    gate = ContentGate(location, precision, threshold, {})
    fitted = {
        "films": len(groups),
        "patients": len(set(groups)),
        "views_per_film": len(views),
        "quantile": quantile,
        "folds": len(np.unique(folds)),
        "out_of_fold_refused": float(np.mean(out_of_fold > threshold)),
        "training_refused": float(np.mean(gate.distance(views[0]) > threshold)),
    }
    return ContentGate(location, precision, threshold, fitted)
