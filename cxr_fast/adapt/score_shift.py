"""Where a site's unlabelled scores sit, against the training films' out-of-fold scores.

A run's out-of-fold logits (``oof.parquet``: every training film scored by the member that never
saw its patient) show how healthy and pneumonia films of the training site score. A new site's
films score as a mixture of the same two shapes, each possibly moved: the site's logits are
modelled as ``pi * f1(z - d1) + (1 - pi) * f0(z - d0)``, with ``f0``/``f1`` kernel density
estimates of the training films' healthy and pneumonia logits, and the prevalence ``pi`` and the
two shifts fitted to the site's films by expectation-maximisation (no site label is read). With
the shifts held at zero this is the EM prevalence estimate of Saerens, Latinne and Decaestecker
(Neural Computation, 2002). The threshold is then chosen again by the run's own policy on the
training films' logits moved by the fitted shifts: where the run would have put it had its
training films looked like the site's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_fast.inference import sigmoid
from cxr_fast.metrics import MARGIN, threshold_choice

# Probabilities are stored as float32: beyond this a logit is rounding, not evidence.
MAX_LOGIT = 16.0
# The densities are tabulated on a grid at most this fine (logits) and interpolated: cheap for
# any archive.
GRID_STEP = 0.02
# Shifts are searched within this many logits of none, in steps of at most SHIFT_STEP; a site
# further off than that is not one a threshold can rescue.
MAX_SHIFT = 8.0
SHIFT_STEP = 0.02
# The floor of a density, so that one film far outside the training films' range cannot veto a
# shift by itself.
DENSITY_FLOOR = 1e-6
EM_ITERATIONS = 200
EM_TOLERANCE = 1e-6


def probability_logits(probs: np.ndarray) -> np.ndarray:
    """Logits of stored probabilities, clipped to +-:data:`MAX_LOGIT`."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.clip(np.log(p) - np.log1p(-p), -MAX_LOGIT, MAX_LOGIT)


@dataclass(frozen=True)
class ClassDensity:
    """A kernel density estimate of one class's logits, tabulated for fast evaluation."""

    grid: np.ndarray
    values: np.ndarray
    bandwidth: float

    @classmethod
    def of(cls, logits: np.ndarray) -> ClassDensity:
        """Gaussian kernels with Silverman's bandwidth over ``logits``, tabulated at a quarter
        of the bandwidth (at most :data:`GRID_STEP`)."""
        z = np.asarray(logits, dtype=np.float64)
        spread = min(z.std(), (np.percentile(z, 75) - np.percentile(z, 25)) / 1.34) or z.std()
        bandwidth = 0.9 * max(spread, 1e-6) * z.size ** (-0.2)
        step = min(GRID_STEP, bandwidth / 4)
        grid = np.arange(z.min() - 4 * bandwidth, z.max() + 4 * bandwidth + step, step)
        # The histogram on the grid convolved with the kernel: exact to the grid's resolution.
        counts, _ = np.histogram(z, bins=np.append(grid - step / 2, grid[-1] + step / 2))
        half = int(np.ceil(4 * bandwidth / step))
        offsets = np.arange(-half, half + 1) * step
        kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2) / (bandwidth * np.sqrt(2 * np.pi))
        values = np.convolve(counts / z.size, kernel, mode="same")
        return cls(grid, values, bandwidth)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The density at ``z`` (floored at :data:`DENSITY_FLOOR`)."""
        return np.maximum(np.interp(z, self.grid, self.values, left=0, right=0), DENSITY_FLOOR)


@dataclass(frozen=True)
class ShiftFit:
    """The site's fitted prevalence and shifts (logits) of its healthy and pneumonia films."""

    prevalence: float
    shift_normal: float
    shift_pneumonia: float
    iterations: int

    def to_dict(self) -> dict:
        """JSON-safe, rounded."""
        return {
            "prevalence": round(self.prevalence, 4),
            "shift_normal": round(self.shift_normal, 3) + 0.0,  # + 0.0: never -0.0
            "shift_pneumonia": round(self.shift_pneumonia, 3) + 0.0,
            "iterations": self.iterations,
        }


def _candidate_shifts(f0: ClassDensity, f1: ClassDensity, ref: np.ndarray) -> np.ndarray:
    """The shifts searched: within :data:`MAX_SHIFT` (and four spreads of the training films'
    logits) of none, in steps of :data:`SHIFT_STEP` (or half the finer bandwidth)."""
    reach = min(MAX_SHIFT, 4 * float(ref.std()))
    step = min(SHIFT_STEP, f0.bandwidth / 2, f1.bandwidth / 2)
    half = int(np.ceil(reach / step))
    return np.arange(-half, half + 1) * step


def _best_shift(
    density: ClassDensity, z: np.ndarray, weight: np.ndarray, shifts: np.ndarray
) -> float:
    """The shift d among ``shifts`` maximising ``sum(weight * log density(z - d))``."""
    if weight.sum() <= 0:
        return 0.0
    scores = [float((weight * np.log(density(z - d))).sum()) for d in shifts]
    return float(shifts[int(np.argmax(scores))])


def fit_shift(
    site_logits: np.ndarray,
    ref_logits: np.ndarray,
    ref_labels: np.ndarray,
    *,
    shifts: bool = True,
) -> ShiftFit:
    """EM fit of the site's prevalence and, with ``shifts``, of its two classes' shifts against
    the training films' logits ``ref_logits`` (labels ``ref_labels``, 1 = PNEUMONIA); without
    ``shifts`` the prevalence alone (Saerens et al. 2002). Starts from the training films'
    prevalence and no shift."""
    z = np.asarray(site_logits, dtype=np.float64)
    ref = np.asarray(ref_logits, dtype=np.float64)
    y = np.asarray(ref_labels)
    f0, f1 = ClassDensity.of(ref[y == 0]), ClassDensity.of(ref[y == 1])
    candidates = _candidate_shifts(f0, f1, ref)
    pi, d0, d1 = float(y.mean()), 0.0, 0.0
    iterations = 0
    while iterations < EM_ITERATIONS:
        iterations += 1
        p1, p0 = pi * f1(z - d1), (1 - pi) * f0(z - d0)
        resp = p1 / (p1 + p0)
        new_pi = float(resp.mean())
        if shifts:
            d0 = _best_shift(f0, z, 1 - resp, candidates)
            d1 = _best_shift(f1, z, resp, candidates)
        if abs(new_pi - pi) < EM_TOLERANCE:
            pi = new_pi
            break
        pi = new_pi
    return ShiftFit(pi, d0, d1, iterations)


def shifted_threshold(
    fit: ShiftFit, ref_logits: np.ndarray, ref_labels: np.ndarray, policy: str = MARGIN
) -> dict:
    """The run's threshold ``policy`` chosen again on the training films' logits moved by the
    fitted shifts (``threshold_choice``'s dict, plus ``shift``: the fit)."""
    y = np.asarray(ref_labels)
    moved = np.asarray(ref_logits, dtype=np.float64) + np.where(
        y == 1, fit.shift_pneumonia, fit.shift_normal
    )
    choice = threshold_choice(y, sigmoid(moved), policy=policy)
    return choice | {"shift": fit.to_dict()}


def prior_threshold(threshold: float, training_prevalence: float, fit: ShiftFit) -> float:
    """The threshold moved for the site's estimated prevalence alone: its log-odds shifted by
    the change in the prior's log-odds, as Bayes' rule moves a posterior (Saerens et al.)."""
    logit = float(np.log(threshold / (1 - threshold)))
    prior = float(np.log(training_prevalence / (1 - training_prevalence)))
    site = float(np.log(fit.prevalence / (1 - fit.prevalence)))
    return float(sigmoid(logit - site + prior))
