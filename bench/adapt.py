"""Site adaptation (`cxr-fast adapt`) against the stored threshold and `calibrate`, measured.

On a labelled external sample (labels used only to judge, never to fit): the run as trained at
its stored threshold; `cxr-fast adapt` with every method, run end to end (`run_adapt` on the
sample's films as an unlabelled folder, the adapted run loaded back and scored); `calibrate`
(Platt + bayes with its default prior) fitted on the whole sample and measured on it (what
`calibrate` prints, optimistic), and cross-fitted on 10 patient folds (each fold predicted by a
calibration fitted on the other nine). Issue 30's item 2, on one run: test-time augmentation
(`--tta`) at the stored threshold, and a temperature fitted on the out-of-fold predictions before
the threshold is chosen.

So that a method is not chosen on the sample alone, `--heldout` also treats held-out training
films as a site: for an ensemble, member K alone (it never saw fold K's patients) scores fold
K's films at the stored threshold, adapted on those films with the other folds' out-of-fold
scores as the training reference; for one model with out-of-fold scores, each patient half of
them with the other half as the reference. Once as they are, and once with pneumonia films left
out at random down to the sample's mix. There adaptation should change little, and must not
hurt.

Every row: n, accuracy (95% bootstrap interval), sensitivity and specificity (95% Wilson
intervals), ROC-AUC (95% bootstrap interval).

    python -m bench.adapt RUN --sample ../shared/data/kaggle-test-sample --work runs/adapt-bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from scipy.stats import binomtest

from cxr_fast.adapt.adapt_stage import run_adapt
from cxr_fast.adapt.batchnorm import reestimate_batchnorm
from cxr_fast.adapt.score_shift import (
    fit_shift,
    prior_threshold,
    probability_logits,
    shifted_threshold,
)
from cxr_fast.calibrate import cross_fitted, fit_platt, fit_site
from cxr_fast.choices import ADAPT_METHODS, BOOTSTRAP, DEFAULT_WORKERS
from cxr_fast.configs import AdaptConfig, CalibrateConfig
from cxr_fast.data.discover import Record, discover, real_path
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.data.split import patient_folds
from cxr_fast.inference import sigmoid
from cxr_fast.metrics import MARGIN, binary_metrics, threshold_choice
from cxr_fast.models import build_model
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, read_run
from cxr_fast.scoring.model import module_model
from cxr_fast.training.folds import OOF_FILE


def wilson(k: int, n: int) -> list[float] | None:
    """The 95% Wilson score interval of k successes in n trials (None for n = 0)."""
    if n == 0:
        return None
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def judge(
    name: str, labels: np.ndarray, probs: np.ndarray, threshold: float, auc: bool = True
) -> dict:
    """One table row: n, accuracy (bootstrap CI), sensitivity and specificity (Wilson CIs),
    ROC-AUC (bootstrap CI; left out where ``probs`` are pooled decisions)."""
    m = binary_metrics(labels, probs, threshold, bootstrap=BOOTSTRAP)
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    row = {
        "name": name,
        "n": int(labels.size),
        "threshold": round(float(threshold), 4),
        "accuracy": round(m["accuracy"], 4),
        "accuracy_ci95": m["ci95"]["accuracy"],
        "sensitivity": round(tp / (tp + fn), 4),
        "sensitivity_ci95": wilson(tp, tp + fn),
        "specificity": round(tn / (tn + fp), 4),
        "specificity_ci95": wilson(tn, tn + fp),
    }
    if auc:
        row |= {"roc_auc": round(m["roc_auc"], 4), "roc_auc_ci95": m["ci95"]["roc_auc"]}
    return row


def _logits(model: torch.nn.Module, contract, records: list, workers: int) -> np.ndarray:
    """Logits of ``records`` in their order (every film must decode)."""
    loader = make_scoring_loader(LoaderSpec(records, contract, 64, workers))
    scorer = module_model(model, contract, inference_precision(torch.device("cpu")))
    index, logits, _ = scorer.predict(loader)
    if index.size != len(records):
        raise SystemExit(f"{len(records) - index.size} films did not decode")
    out = np.empty(len(records), dtype=np.float64)
    out[index] = logits
    return out


def calibrate_rows(records: list, labels: np.ndarray, logits: np.ndarray, threshold: float):
    """`calibrate` (its defaults) in-sample and cross-fitted on 10 patient folds."""
    prior = CalibrateConfig.prior_strength
    site = fit_site(logits, labels, threshold=threshold, prior=prior)
    rows = [
        judge(
            f"calibrate (T {site.temperature:.2f}, b {site.bias:+.2f}), fitted and measured on "
            "the same films",
            labels,
            site.probabilities(logits),
            site.choice["threshold"],
        )
    ]
    folds = patient_folds(records, 10, seed=0)
    pred = cross_fitted(logits, labels, folds, 10, threshold=threshold, prior=prior)
    crossed = judge("calibrate, cross-fitted (10 patient folds)", labels, pred.astype(float), 0.5)
    rows.append(crossed | {"threshold": None, "roc_auc": None})
    return rows


def oof_temperature_threshold(run: Path, policy: str = MARGIN) -> float:
    """Issue 30 item 2: the threshold the run would store had a temperature and bias been fitted
    on its out-of-fold predictions before the threshold was chosen, as a raw probability."""
    table = pq.read_table(run / OOF_FILE, columns=["label", "prob_pneumonia"])
    labels = table.column("label").to_numpy().astype(np.int64)
    z = probability_logits(table.column("prob_pneumonia").to_numpy())
    temperature, bias = fit_platt(z, labels)
    tempered = threshold_choice(labels, sigmoid(z / temperature + bias), policy=policy)
    t = tempered["threshold"]
    return float(sigmoid((np.log(t / (1 - t)) - bias) * temperature))


def sample_rows(run: Path, sample: Path, work: Path, methods: list[str], workers: int) -> list:
    """Every row on the external sample (see the module docstring)."""
    records = [r for r in discover(sample) if r.label is not None]
    labels = np.array([r.label for r in records])
    model, info = load_run(run)
    logits = _logits(model, info.contract, records, workers)
    rows = [judge("as trained, stored threshold", labels, sigmoid(logits), info.threshold)]
    for method in methods:
        out = work / method.replace("+", "-")
        config = AdaptConfig(
            run, sample, out, method=method, export="none", overwrite=True, workers=workers
        )
        result = run_adapt(config, log=lambda _: None)
        adapted, adapted_info = load_run(out)
        z = _logits(adapted, adapted_info.contract, records, workers)
        name = f"adapt --method {method} ({json.dumps(result.adaptation.get('shift', {}))})"
        rows.append(judge(name, labels, sigmoid(z), adapted_info.threshold))
    rows += calibrate_rows(records, labels, logits, info.threshold)
    tta, _ = load_run(run, tta=True)
    z = _logits(tta, info.contract, records, workers)
    rows.append(judge("item 2: --tta, stored threshold", labels, sigmoid(z), info.threshold))
    t = oof_temperature_threshold(run)
    rows.append(
        judge("item 2: temperature on out-of-fold, then margin", labels, sigmoid(logits), t)
    )
    return rows


def member(run: Path, k: int) -> tuple[torch.nn.Module, object]:
    """Member ``k`` of an ensemble run alone (its aligned head, as in the ensemble)."""
    state, info = read_run(run)
    prefix = f"members.{k}."
    model = build_model(info.arch)
    model.load_state_dict({n[len(prefix) :]: v for n, v in state.items() if n.startswith(prefix)})
    return model.to(memory_format=torch.channels_last).eval(), info


def _resampled(oof: dict, rows: np.ndarray, mix: float | None, seed: int) -> np.ndarray:
    """``rows``, or with ``mix`` their pneumonia rows left out at random down to that
    prevalence."""
    if mix is None:
        return rows
    labels = oof["label"][rows]
    healthy, sick = rows[labels == 0], rows[labels == 1]
    keep = min(sick.size, round(healthy.size * mix / (1 - mix)))
    chosen = np.random.default_rng(seed).choice(sick, keep, replace=False)
    return np.sort(np.concatenate([healthy, chosen]))


def held_out_sites(oof: dict, members: int) -> list[tuple[int, np.ndarray]]:
    """(member, site rows) pairs: for an ensemble each fold with the member that never saw it
    (the other folds are the reference); for one model its out-of-fold films split in two
    halves by patient (each half the other's reference)."""
    if members > 1:
        return [(k - 1, np.flatnonzero(oof["fold"] == k)) for k in sorted(set(oof["fold"]))]
    records = [Record(p, None, None, q) for p, q in zip(oof["path"], oof["patient"], strict=True)]
    halves = np.array(patient_folds(records, 2, seed=0))
    return [(0, np.flatnonzero(halves == h)) for h in (0, 1)]


def _read_oof(run: Path) -> dict:
    table = pq.read_table(run / OOF_FILE).to_pydict()
    paths = [real_path(p, b) for p, b in zip(table["path"], table["path_bytes"], strict=True)]
    return {
        "path": paths,
        "patient": table["patient"],
        "label": np.array(table["label"], dtype=np.int64),
        "fold": np.array(table["fold"]),
        "logit": probability_logits(np.array(table["prob_pneumonia"])),
    }


def _site_decisions(oof: dict, run: Path, k: int, rows: np.ndarray, workers: int) -> dict:
    """The site ``rows``: labels, the plain and AdaBN logits of member ``k`` (the run itself for
    one model), and each method's 0/1 decisions, fitted without a label of the site (the
    other out-of-fold rows are the training reference)."""
    _, info = read_run(run)
    t = info.threshold
    ref = np.ones(len(oof["label"]), dtype=bool)
    ref[rows] = False
    ref_z, ref_y = oof["logit"][ref], oof["label"][ref]
    z = oof["logit"][rows]
    model, _ = member(run, k) if info.members > 1 else load_run(run)
    records = [Record(oof["path"][i], None, None, oof["patient"][i]) for i in rows]
    loader = make_scoring_loader(LoaderSpec(records, info.contract, 64, workers))
    reestimate_batchnorm(model, loader, torch.device("cpu"))
    za = _logits(model, info.contract, records, workers)

    def shifted(scores: np.ndarray) -> np.ndarray:
        choice = shifted_threshold(fit_shift(scores, ref_z, ref_y), ref_z, ref_y)
        return sigmoid(scores) >= choice["threshold"]

    prior = prior_threshold(t, float(ref_y.mean()), fit_shift(z, ref_z, ref_y, shifts=False))
    return {
        "labels": oof["label"][rows],
        "plain": z,
        "adabn_logits": za,
        "as trained": sigmoid(z) >= t,
        "adabn": sigmoid(za) >= t,
        "shift": shifted(z),
        "adabn+shift": shifted(za),
        "prior": sigmoid(z) >= prior,
    }


def heldout_rows(run: Path, workers: int, mix: float | None) -> list:
    """Held-out training films as sites, pooled (see the module docstring)."""
    oof = _read_oof(run)
    _, info = read_run(run)
    sites = held_out_sites(oof, info.members)
    parts = [
        _site_decisions(oof, run, k, _resampled(oof, rows, mix, seed=i), workers)
        for i, (k, rows) in enumerate(sites)
    ]
    labels = np.concatenate([p["labels"] for p in parts])
    where = "held-out training films as sites" + (
        "" if mix is None else f", resampled to {mix:.0%} pneumonia"
    )
    rows = []
    for name in ("as trained", *ADAPT_METHODS):
        pred = np.concatenate([p[name] for p in parts]).astype(float)
        row = judge(f"{where}: {name}", labels, pred, 0.5, auc=False) | {"threshold": None}
        source = "adabn_logits" if name.startswith("adabn") else "plain"
        scores = np.concatenate([p[source] for p in parts])
        auc = binary_metrics(labels, sigmoid(scores), 0.5, bootstrap=BOOTSTRAP)
        rows.append(
            row | {"roc_auc": round(auc["roc_auc"], 4), "roc_auc_ci95": auc["ci95"]["roc_auc"]}
        )
    return rows


def _interval(ci: list | None) -> str:
    return "" if not ci else f" ({ci[0]:.3f}–{ci[1]:.3f})"


def markdown(rows: list) -> list[str]:
    """The rows as a Markdown table."""
    lines = [
        "| | n | threshold | accuracy (95% CI) | sensitivity (95% CI) | specificity (95% CI) "
        "| ROC-AUC (95% CI) |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        auc = (
            "—" if r.get("roc_auc") is None else f"{r['roc_auc']:.3f}{_interval(r['roc_auc_ci95'])}"
        )
        threshold = "—" if r["threshold"] is None else f"{r['threshold']:.4f}"
        lines.append(
            f"| {r['name']} | {r['n']} | {threshold} | {r['accuracy']:.3f}"
            f"{_interval(r['accuracy_ci95'])} | {r['sensitivity']:.3f}"
            f"{_interval(r['sensitivity_ci95'])} | {r['specificity']:.3f}"
            f"{_interval(r['specificity_ci95'])} | {auc} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--sample", type=Path, default=Path("../shared/data/kaggle-test-sample"))
    parser.add_argument("--work", type=Path, required=True, help="where the adapted runs go")
    parser.add_argument("--methods", default=",".join(ADAPT_METHODS))
    parser.add_argument("--heldout", action="store_true", help="also each training fold as a site")
    parser.add_argument("--mix", type=float, default=0.59, help="--heldout's resampled prevalence")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    rows = sample_rows(args.run, args.sample, args.work, methods, args.workers)
    if args.heldout:
        rows += heldout_rows(args.run, args.workers, None)
        rows += heldout_rows(args.run, args.workers, args.mix)
    print("\n".join(markdown(rows)))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
