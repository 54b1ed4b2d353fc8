"""Does an ensemble's threshold fit the scores the ensemble gives?

An ensemble run chooses its threshold on pooled out-of-fold scores: each training film scored
by the one member that never saw its patient. The run then applies it to the mean of all
members' logits. When the members disagree on a film their mean sits nearer zero than any one
of them, and when their scales differ the pooled scores are a mixture; either way the
ensemble's scores on new films can have another distribution than the one the threshold was
chosen on. This bench puts the two side by side on a labelled sample none of the members saw:
the pooled out-of-fold logits, each member's logits and the ensemble's, by class, and the
sample's metrics at the stored threshold for the ensemble and for each member alone.

    python -m bench.ensemble_threshold RUN --data ../shared/data/kaggle-test-sample
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.inference import sigmoid
from cxr_fast.metrics import binary_metrics, threshold_choice
from cxr_fast.precision import inference_precision
from cxr_fast.run_folder import load_run, read_run
from cxr_fast.scoring.model import module_model
from cxr_fast.training.member_alignment import apply_alignment, fit_alignment

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def sample_logits(run: str, data: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, each member's own logits [members, films], stored threshold) on the labelled
    folder ``data``: the films decoded once, every member run on each batch. A run trained
    with aligned members has the alignment in their heads; it is taken back out."""
    model, info = load_run(run)
    members = list(getattr(model, "members", [model]))
    records = [r for r in discover(data) if r.label is not None]
    cpu = inference_precision(torch.device("cpu"))
    scorers = [module_model(member, info.contract, cpu) for member in members]
    for member in members:
        member.eval()
    index, rows = [], [[] for _ in members]
    for batch in make_scoring_loader(LoaderSpec(records, info.contract, 64)):
        if batch.x is None:
            continue
        index.append(batch.index.numpy())
        for row, scorer in zip(rows, scorers, strict=True):
            row.append(scorer.logits(batch.x).numpy())
    order = np.argsort(np.concatenate(index))
    logits = np.stack([np.concatenate(row)[order] for row in rows])
    alignment = info.meta.get("member_alignment")
    if alignment:
        logits = np.stack([(m - b) / a for (a, b), m in zip(alignment, logits, strict=True)])
    labels = np.array([records[i].label for i in np.sort(np.concatenate(index))])
    return labels, logits, info.threshold


def _quantile_row(name: str, values: np.ndarray) -> str:
    cells = " | ".join(f"{q:+.2f}" for q in np.quantile(values, QUANTILES))
    return f"| {name} | {values.size} | {cells} |"


def _metrics_row(name: str, labels: np.ndarray, logits: np.ndarray, threshold: float) -> str:
    m = binary_metrics(labels, sigmoid(logits), threshold)
    lo, hi = m["ci95"]["accuracy"]
    return (
        f"| {name} | {m['accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | {m['sensitivity']:.3f} | "
        f"{m['specificity']:.3f} | {m['roc_auc']:.3f} |"
    )


def aligned(
    oof_logits: np.ndarray, folds: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What training does since the members are aligned (training/member_alignment.py): each
    member's logits mapped onto the pooled out-of-fold scale. Returns (aligned pooled
    out-of-fold logits, aligned member logits on the sample); ``folds`` are 0-based."""
    alignment = fit_alignment(oof_logits, folds, members.shape[0])
    sample = np.stack([a * m + b for (a, b), m in zip(alignment, members, strict=True)])
    return apply_alignment(oof_logits, folds, alignment), sample


def raw_out_of_fold(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, the members' own out-of-fold logits, 0-based fold) of ``run``; a run trained
    with aligned members stores aligned scores, which are mapped back."""
    oof = pq.read_table(Path(run) / "oof.parquet").to_pydict()
    folds = np.array(oof["fold"]) - 1
    logits = _logit(np.array(oof["prob_pneumonia"]))
    alignment = read_run(run)[1].meta.get("member_alignment")
    if alignment:
        scale = np.array([a for a, _ in alignment])[folds]
        shift = np.array([b for _, b in alignment])[folds]
        logits = (logits - shift) / scale
    return np.array(oof["label"]), logits, folds


def _aligned_rows(run: str, members: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[str]:
    """The sample's metrics with every member aligned and the threshold re-chosen."""
    oof_labels, oof_logits, folds = raw_out_of_fold(run)
    oof_aligned, sample_aligned = aligned(oof_logits, folds, members)
    choice = threshold_choice(oof_labels, sigmoid(oof_aligned))
    pooled = binary_metrics(oof_labels, sigmoid(oof_aligned), choice["threshold"], seed=seed)
    return [
        f"| aligned members (threshold {choice['threshold']:.4f}, out-of-fold ROC-AUC "
        f"{pooled['roc_auc']:.4f}) "
        + _metrics_row("", labels, sample_aligned.mean(axis=0), choice["threshold"])[3:],
    ]


def report(run: str, data: str) -> list[str]:
    """The bench's Markdown lines: the plain mean of the members with the threshold chosen on
    their pooled out-of-fold logits (ensembles before the alignment), then the aligned one."""
    labels, members, _ = sample_logits(run, data)
    ensemble = members.mean(axis=0)
    oof_labels, oof_logits, _ = raw_out_of_fold(run)
    threshold = threshold_choice(oof_labels, sigmoid(oof_logits))["threshold"]
    head = " | ".join(f"q{int(q * 100)}" for q in QUANTILES)
    lines = [
        f"margin threshold on the pooled out-of-fold logits: {threshold:.4f} "
        f"(logit {_logit(np.array([threshold]))[0]:+.2f})",
        "",
        f"| logits | n | {head} |",
        "|---|---|" + "---|" * len(QUANTILES),
    ]
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        lines.append(_quantile_row(f"{name}: pooled out-of-fold", oof_logits[oof_labels == label]))
        for k, member in enumerate(members):
            lines.append(_quantile_row(f"{name}: sample, member {k + 1}", member[labels == label]))
        lines.append(_quantile_row(f"{name}: sample, plain mean", ensemble[labels == label]))
    lines += [
        "",
        "| on the sample | accuracy (95% CI) | sensitivity | specificity | ROC-AUC |",
        "|---|---|---|---|---|",
        _metrics_row("plain mean", labels, ensemble, threshold),
    ]
    lines += [_metrics_row(f"member {k + 1}", labels, m, threshold) for k, m in enumerate(members)]
    return lines + _aligned_rows(run, members, labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an ensemble run folder (with oof.parquet)")
    parser.add_argument("--data", default="../shared/data/kaggle-test-sample")
    args = parser.parse_args(argv)
    print("\n".join(report(args.run, args.data)))


if __name__ == "__main__":
    main()
