"""``run_calibrate``: fit a run's probabilities and decision threshold on a site's labelled sample.

A model trained on one acquisition scores films from another with shifted probabilities. A
small labelled sample from the deployment site fixes what shifts. Platt scaling fits two numbers
by maximum likelihood, a temperature T and a bias b, so that ``sigmoid(logit / T + b)`` means
what it says at the site: T undoes over- or under-confidence, b the shift of the whole score
distribution (healthy films scored higher than in training). The threshold is then, by default,
0.5 on those probabilities ("bayes": the fewest expected errors at the sample's prevalence), or
a prevalence-free policy on them, or the one keeping a target sensitivity. Two parameters fitted
on ~100 films transfer to films they were not fitted on far better than a threshold picked from
the sample's own ROC curve (:func:`cross_fit`; docs/results.md). A weak prior centred
on the run as trained (T = 1, decision at its stored threshold) keeps ~100-200 films from
moving the threshold further than they show. The weights are not
touched: the new run folder holds the same state dict with the calibration in its metadata.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cxr_fast.choices import (
    BOOTSTRAP,
    CALIBRATION_POLICIES,
    DEFAULT_WORKERS,
    MIN_CALIBRATION_PER_CLASS,
    ROC_POLICIES,
)
from cxr_fast.configs import CalibrateConfig
from cxr_fast.data.discover import Record, discover, paths_sha256
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.data.split import patient_folds
from cxr_fast.device import resolve_device
from cxr_fast.errors import UserInputError
from cxr_fast.inference import sigmoid
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.leakage import leakage, leakage_warning
from cxr_fast.metrics import MARGIN, binary_metrics, format_metrics, threshold_choice, youden_j
from cxr_fast.run_folder import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    atomic_torch_save,
    atomic_write_json,
    read_json,
    sha256,
)
from cxr_fast.scoring.model import ScoringModel, load_model
from cxr_fast.text import plural

# Below this a threshold fitted on the sample is mostly noise (one image moves sensitivity or
# specificity by more than 4 points in a 25-image class).
MIN_SAMPLE_IMAGES = 50
# A calibrated run that misses this much more of the sample's pneumonia than the run as trained
# did on the same films deserves a line on the console, not only a number in metrics.json.
SENSITIVITY_DROP_WARNING = 0.05


@dataclass(frozen=True)
class CalibrationResult:
    """The new run folder and what calibration changed."""

    out: Path
    temperature: float
    bias: float
    threshold: float
    before: dict
    after: dict
    n: int
    leakage: dict | None = None  # the sample's overlap with the run's training patients
    warnings: tuple[str, ...] = ()  # one line each, for the console
    cross_fit: dict | None = None  # :func:`cross_fit_summary` with ``--cross-fit K``; else None

    def warning_lines(self, data: Path) -> list[str]:
        """What the user should read first: the sample's overlap with the run's training
        patients, and :func:`sample_warnings`."""
        found = leakage_warning(self.leakage, str(data))
        return [line for line in (found, *self.warnings) if line]

    def summary(self, data: Path) -> str:
        """The sample, the fit, the metrics before and after, the cross-fitted estimate, and
        where the calibrated run went."""
        lines = [
            f"site sample: {plural(self.n, 'image')} under {data}",
            f"temperature {self.temperature:.3f}, bias {self.bias:+.3f}, threshold "
            f"{self.before['threshold']:.4f} -> {self.threshold:.4f}",
        ]
        for name, metrics in (
            ("before (the run as trained)", self.before),
            ("after (fitted on this sample)", self.after),
        ):
            lines += [f"\n{name}:", format_metrics(metrics)]
        if self.cross_fit is not None:
            lines.append(f"\n{cross_fit_line(self.cross_fit)}")
        lines.append(f"\ncalibrated run: {self.out}")
        return "\n".join(lines)


def cross_fit_line(crossed: dict) -> str:
    """One line: the cross-fitted accuracy (95% CI), sensitivity and specificity."""
    ci = crossed["accuracy_ci95"]
    interval = f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    return (
        f"cross-fitted ({crossed['folds']} patient folds, each predicted by a calibration "
        f"fitted without it): accuracy {crossed['accuracy']:.3f}{interval}, "
        f"sensitivity {crossed['sensitivity']:.3f}, specificity {crossed['specificity']:.3f}"
    )


def fit_platt(
    logits: np.ndarray, labels: np.ndarray, center: float = 0.0, prior: float = 0.0
) -> tuple[float, float]:
    """Platt scaling: the temperature T > 0 and bias b of ``sigmoid(logits / T + b)``.

    Fitted as ``sigmoid((logits - center) / T + c)`` by maximum a posteriori: the summed binary
    cross-entropy plus ``prior / 2 * (c**2 + log(T)**2)``, a Gaussian prior of standard
    deviation ``1 / sqrt(prior)`` on c and on log T around "the run as trained is right"
    (T = 1, decision at the logit ``center``). ``prior = 0`` is plain maximum likelihood. The
    targets are Platt's smoothed ones, (n+ + 1) / (n+ + 2) for PNEUMONIA and 1 / (n- + 2) for
    NORMAL, so a small sample that the model separates perfectly does not drive T to zero
    (probabilities of exactly 0 and 1). Returns (T, b) with b = c - center / T.
    """
    y = np.asarray(labels)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    targets = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64) - center)
    t = torch.as_tensor(targets, dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) > 0
    shift = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t, shift], lr=0.5, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            z / log_t.exp() + shift, t, reduction="sum"
        )
        loss = nll + 0.5 * prior * (shift**2 + log_t**2)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return temperature, float(shift.detach()) - center / temperature


@dataclass(frozen=True)
class SiteFit:
    """Platt parameters and the threshold chosen on the probabilities they give."""

    temperature: float
    bias: float
    choice: dict

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(PNEUMONIA) at the site: ``sigmoid(logits / T + b)``."""
        return platt_probabilities(logits, self.temperature, self.bias)


def platt_probabilities(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    """``sigmoid(logits / temperature + bias)``."""
    return sigmoid(np.asarray(logits) / temperature + bias)


def bayes_choice(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Threshold 0.5 on calibrated probabilities, in :func:`threshold_choice`'s format."""
    return {
        "policy": "bayes",
        "interval": None,
        "tolerance": None,
        "threshold": 0.5,
        "youden_j": youden_j(labels, probs, 0.5),
    }


def fit_site(
    logits: np.ndarray,
    labels: np.ndarray,
    policy: str = CalibrateConfig.threshold_policy,
    target_sensitivity: float | None = None,
    *,
    threshold: float = 0.5,
    prior: float = 0.0,
) -> SiteFit:
    """Platt-scale ``logits`` on ``labels`` and choose the threshold with ``policy`` (one of
    :data:`CALIBRATION_POLICIES`), or for ``target_sensitivity`` when given. ``threshold`` is the
    run's own (its logit is the prior's centre) and ``prior`` the prior's strength
    (:func:`fit_platt`)."""
    if policy not in CALIBRATION_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(CALIBRATION_POLICIES)}, got {policy!r}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    center = float(np.log(threshold / (1 - threshold)))
    temperature, bias = fit_platt(logits, labels, center=center, prior=prior)
    probs = platt_probabilities(logits, temperature, bias)
    if target_sensitivity is None and policy == "bayes":
        choice = bayes_choice(labels, probs)
    else:
        rule = policy if policy in ROC_POLICIES else MARGIN
        choice = threshold_choice(labels, probs, policy=rule, target_sensitivity=target_sensitivity)
    return SiteFit(temperature, bias, choice)


def cross_fitted(
    logits: np.ndarray,
    labels: np.ndarray,
    folds: list[int],
    k: int,
    policy: str = CalibrateConfig.threshold_policy,
    target_sensitivity: float | None = None,
    *,
    threshold: float = 0.5,
    prior: float = 0.0,
) -> np.ndarray:
    """Held-out predictions (1 = PNEUMONIA) of every fold, the calibration fitted without it
    (the other arguments as in :func:`fit_site`)."""
    pred = np.zeros(labels.size, dtype=np.int64)
    folds_arr = np.asarray(folds)
    for fold in range(k):
        fit, held = folds_arr != fold, folds_arr == fold
        site = fit_site(
            logits[fit], labels[fit], policy, target_sensitivity, threshold=threshold, prior=prior
        )
        pred[held] = site.probabilities(logits[held]) >= site.choice["threshold"]
    return pred


def cross_fit_summary(labels: np.ndarray, pred: np.ndarray, bootstrap: int = BOOTSTRAP) -> dict:
    """Accuracy (with its 95% bootstrap interval), sensitivity and specificity of 0/1
    predictions."""
    # binary_metrics on 0/1 "probabilities" at 0.5 gives the held-out confusion and its CI.
    metrics = binary_metrics(labels, pred.astype(float), 0.5, bootstrap=bootstrap)
    keys = ("accuracy", "sensitivity", "specificity")
    return {k: round(metrics[k], 4) for k in keys} | {"accuracy_ci95": metrics["ci95"]["accuracy"]}


def cross_fit(
    records: list[Record],
    logits: np.ndarray,
    labels: np.ndarray,
    k: int,
    policy: str = CalibrateConfig.threshold_policy,
    target_sensitivity: float | None = None,
    *,
    threshold: float = 0.5,
    prior: float = 0.0,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP,
) -> dict:
    """The calibration judged on films it was not fitted on: ``records`` split by patient into
    ``k`` folds, each fold predicted by :func:`fit_site` on the other ``k - 1``; the pooled
    held-out predictions' :func:`cross_fit_summary`, with ``folds`` and ``seed``."""
    _check_cross_fit(k, records)
    folds = patient_folds(records, k, seed=seed)
    pred = cross_fitted(
        logits, labels, folds, k, policy, target_sensitivity, threshold=threshold, prior=prior
    )
    return {"folds": k, "seed": seed} | cross_fit_summary(labels, pred, bootstrap)


def _check_cross_fit(k: int, records: list[Record]) -> None:
    """UserInputError unless every one of ``k`` patient folds can hold a patient."""
    patients = len({r.patient for r in records})
    if not 2 <= k <= patients:
        raise UserInputError(f"--cross-fit must be between 2 and the sample's {patients} patients")


def sample_fingerprint(root: Path, records: list[Record]) -> dict:
    """Size, class counts, patients and a hash of the sorted relative paths of a sample."""
    counts = Counter(CLASS_NAMES[r.label] for r in records)
    return {
        "root": str(root.resolve()),
        "n": len(records),
        "counts": {name: counts.get(name, 0) for name in CLASS_NAMES},
        "patients": len({r.patient for r in records}),
        "paths_sha256": paths_sha256(root, records),
    }


def _labelled_sample(data: Path, min_per_class: int = MIN_CALIBRATION_PER_CLASS) -> list[Record]:
    """The labelled records under ``data``; UserInputError unless there are enough of each
    class to fit on honestly."""
    records = [r for r in discover(data) if r.label is not None]
    counts = Counter(r.label for r in records)
    if len(records) < MIN_SAMPLE_IMAGES:
        raise UserInputError(
            f"{data} holds {len(records)} labelled images: calibration needs at least "
            f"{MIN_SAMPLE_IMAGES} (NORMAL/ and PNEUMONIA/ folders)"
        )
    if len(counts) < 2:
        only = CLASS_NAMES[next(iter(counts))]
        raise UserInputError(f"{data} holds only {only} images: calibration needs both classes")
    if min(counts[label] for label in range(len(CLASS_NAMES))) < min_per_class:
        held = " and ".join(f"{counts[label]} {name}" for label, name in enumerate(CLASS_NAMES))
        raise UserInputError(
            f"{data} holds {held} images: calibration needs at least {min_per_class} of each "
            f"class to fit a threshold that means anything (--min-per-class lowers the bar)"
        )
    return records


def sample_warnings(
    min_per_class: int, before: dict, after: dict, target_sensitivity: float | None = None
) -> list[str]:
    """Lines the user should read before deploying the calibrated run: a lowered
    ``min_per_class``, and a sensitivity on the sample (``after``, at the calibrated threshold)
    that fell by more than :data:`SENSITIVITY_DROP_WARNING` below the run as trained
    (``before``, at its stored threshold, on the same films)."""
    found = []
    if min_per_class < MIN_CALIBRATION_PER_CLASS:
        found.append(
            f"--min-per-class {min_per_class} is below {MIN_CALIBRATION_PER_CLASS}: with so few "
            "films of a class the fitted threshold is mostly noise"
        )
    drop = before["sensitivity"] - after["sensitivity"]
    if drop > SENSITIVITY_DROP_WARNING:
        found.append(
            f"the calibrated run's sensitivity on the sample is {after['sensitivity']:.3f} at "
            f"threshold {after['threshold']:.4f}, down from {before['sensitivity']:.3f} for the "
            f"run as trained at {before['threshold']:.4f}: it misses more pneumonia"
            + ("" if target_sensitivity is not None else " (--target-sensitivity keeps a level)")
        )
    return found


def _check_request(run: Path, out: Path, overwrite: bool, min_per_class: int) -> None:
    """One line, before anything is read, for an --out that would replace the run or another
    run, or a --min-per-class below 1."""
    if out.resolve() == run.resolve():
        raise UserInputError("--out must be a new folder: the calibrated run keeps the original")
    if (out / MODEL_FILE).exists() and not overwrite:
        raise UserInputError(f"{out} already holds a run: choose another --out or pass --overwrite")
    if min_per_class < 1:
        raise UserInputError(f"--min-per-class must be at least 1, got {min_per_class}")


def _load(ref: Path, out: Path, device: str) -> tuple[ScoringModel, Path]:
    """(the model ``ref`` names, as evaluate measures it; the run folder the calibrated run is
    written from: ``ref`` itself, or the run an export was made from). One line when the model
    is calibrated already, or an export's run is nowhere to be found."""
    model = load_model(ref, resolve_device(device))
    if model.calibrated:
        raise UserInputError(f"{ref} is already calibrated; calibrate the run it came from")
    source = model.run_folder()
    if source is None:
        raise UserInputError(
            f"{ref} is an export whose run (the folder holding the model.pt it was made from, "
            f"{model.meta.get('source')}) is gone: calibrate writes a calibrated run from it"
        )
    if out.resolve() == source.resolve():
        raise UserInputError("--out must be a new folder: the calibrated run keeps the original")
    return model, source


def _calibration_record(
    fit, prior: float, model: ScoringModel, run: Path, data: Path, records: list
) -> dict:
    """What the calibrated run's metadata says of its calibration: the fit, its prior, the
    sample it was fitted on and the run it came from (and the export it was fitted with)."""
    return {
        "method": "platt",
        "temperature": fit.temperature,
        "bias": fit.bias,
        # The prior's centre is the run's own threshold, at temperature 1.
        "prior": {"strength": prior, "threshold": model.threshold},
        "threshold_choice": fit.choice,
        "sample": sample_fingerprint(data, records),
        "source_run": str(run.resolve()),
        "source_model_sha256": sha256(run / MODEL_FILE),
        **({"fitted_with": _fitted_with(model)} if model.is_export else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fitted_with(model: ScoringModel) -> dict:
    """The export whose logits a calibration was fitted on."""
    return {"model": str(model.source), "backend": model.backend, "sha256": model.checksum}


@dataclass(frozen=True)
class _Request:
    """How to fit: the arguments of :func:`run_calibrate` that shape the fit and its report."""

    policy: str
    target_sensitivity: float | None
    prior: float
    bootstrap: int
    cross_fit_folds: int | None


def _fit(records: list, logits: np.ndarray, threshold: float, request: _Request) -> tuple:
    """(the site fit, metrics before, metrics after, the cross-fitted summary or None) of
    ``logits`` of ``records`` for a run whose own threshold is ``threshold``."""
    labels = np.array([r.label for r in records])
    rule = (request.policy, request.target_sensitivity)
    fit = fit_site(logits, labels, *rule, threshold=threshold, prior=request.prior)
    before = binary_metrics(labels, sigmoid(logits), threshold, bootstrap=request.bootstrap)
    after = binary_metrics(
        labels,
        fit.probabilities(logits),
        fit.choice["threshold"],
        bootstrap=request.bootstrap,
    )
    crossed = None
    if request.cross_fit_folds is not None:
        crossed = cross_fit(
            records,
            logits,
            labels,
            request.cross_fit_folds,
            *rule,
            threshold=threshold,
            prior=request.prior,
            bootstrap=request.bootstrap,
        )
    return fit, before, after, crossed


def run_calibrate(
    run: Path,
    data: Path,
    out: Path,
    *,
    target_sensitivity: float | None = None,
    policy: str = CalibrateConfig.threshold_policy,
    prior: float = CalibrateConfig.prior_strength,
    device: str = "auto",
    workers: int = DEFAULT_WORKERS,
    bootstrap: int = BOOTSTRAP,
    overwrite: bool = False,
    min_per_class: int = MIN_CALIBRATION_PER_CLASS,
    cross_fit_folds: int | None = None,
    progress: Callable[[int], None] | None = None,
    set_total: Callable[[int], None] | None = None,
) -> CalibrationResult:
    """Fit Platt scaling and threshold of ``run`` (a run folder or an export of one) on the
    labelled sample ``data`` into the new run folder ``out``; UserInputError, before anything is
    loaded or written, when the sample holds fewer than ``min_per_class`` films of either class.
    An export is fitted on its own logits and the calibrated run written from the run it was
    made from (export that run to deploy it). ``cross_fit_folds`` K also estimates the
    calibration on films it was not fitted on (:func:`cross_fit`, K patient folds).
    ``progress(n)``: films scored; ``set_total(n)``: how many there are, once counted."""
    _check_request(run, out, overwrite, min_per_class)
    records = _labelled_sample(data, min_per_class)
    if cross_fit_folds is not None:
        _check_cross_fit(cross_fit_folds, records)  # before the model is loaded
    if set_total is not None:
        set_total(len(records))
    model, source = _load(run, out, device)
    loader = make_scoring_loader(LoaderSpec(records, model.contract, 64, workers, model.device))
    index, logits, _ = model.predict(loader, progress)
    records = [records[i] for i in index]  # the order of logits, for the patient folds
    request = _Request(policy, target_sensitivity, prior, bootstrap, cross_fit_folds)
    fit, before, after, crossed = _fit(records, logits, model.threshold, request)
    calibration = _calibration_record(fit, prior, model, source, data, records)
    found = leakage(model.run_config(), records)
    _write_run(source, out, fit.choice, calibration)
    measured = {"leakage": found, "calibration": calibration, "before": before, "after": after}
    atomic_write_json(
        {"split": "site sample (in-sample: fitted here)", **measured}
        | ({"cross_fitted": crossed} if crossed is not None else {}),
        out / METRICS_FILE,
    )
    warnings = sample_warnings(min_per_class, before, after, target_sensitivity)
    return CalibrationResult(
        out=out,
        temperature=fit.temperature,
        bias=fit.bias,
        threshold=fit.choice["threshold"],
        before=before,
        after=after,
        n=len(records),
        leakage=found,
        warnings=tuple(warnings),
        cross_fit=crossed,
    )


def calibrate_arguments(config: CalibrateConfig) -> dict:
    """:func:`run_calibrate`'s arguments from ``config`` (what the command line builds)."""
    return {
        "run": config.run,
        "data": config.data,
        "out": config.out,
        "target_sensitivity": config.target_sensitivity,
        "policy": config.threshold_policy,
        "prior": config.prior_strength,
        "device": config.device,
        "workers": config.workers,
        "overwrite": config.overwrite,
        "min_per_class": config.min_per_class,
        "cross_fit_folds": config.cross_fit,
    }


def _write_run(run: Path, out: Path, choice: dict, calibration: dict) -> None:
    """The calibrated run in ``out``: ``run``'s weights, its metadata with the calibration."""
    checkpoint = torch.load(run / MODEL_FILE, map_location="cpu", weights_only=True)
    checkpoint["meta"] = {
        **checkpoint["meta"],
        "threshold": choice["threshold"],
        "threshold_rule": f"site calibration ({choice['policy']})",
        "threshold_choice": choice,
        "calibration": calibration,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(checkpoint, out / MODEL_FILE)
    if (run / CONFIG_FILE).is_file():
        config = read_json(run / CONFIG_FILE)
        atomic_write_json({**config, "calibration": calibration}, out / CONFIG_FILE)
