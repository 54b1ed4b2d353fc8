"""Cross-validated ensembles: patient-level folds, out-of-fold predictions, and a run folder
every stage takes like a single run."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.data.split import patient_folds
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.explain.explainer import Explainer
from cxr_fast.models.ensemble import Ensemble
from cxr_fast.run_folder import load_run, read_json
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.folds import OOF_FILE, member_dir, run_train_folds

TINY = dict(
    arch="cnn", image_size=64, batch_size=16, lr=3e-3, warmup_epochs=0.5, workers=0, export="none"
)


@pytest.fixture(scope="module")
def ensemble_run(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("folds") / "ens"
    config = TrainConfig(data=str(synth_small), out=str(out), epochs=3, folds=3, **TINY)
    messages, reported = [], []
    result = run_train_folds(
        config, log=messages.append, on_member=lambda k, auc: reported.append((k, auc))
    )
    return config, result, messages, reported


def test_each_member_reports_the_mean_validation_auc_so_far(ensemble_run):
    _, result, _, reported = ensemble_run
    assert [k for k, _ in reported] == [0, 1, 2]  # tune's pruner hears after every member
    best = [read_json(member_dir(result.run_dir, k) / "metrics.json") for k in range(3)]
    aucs = [m["roc_auc"] for m in best]
    for k, auc in reported:
        assert auc == pytest.approx(np.mean(aucs[: k + 1]), abs=1e-6)


def test_patient_folds_are_disjoint_balanced_and_order_free(synth_small):
    records = [r for r in discover(synth_small) if r.label is not None]
    folds = patient_folds(records, 4, seed=1)
    by_patient = {}
    for record, fold in zip(records, folds, strict=True):
        assert by_patient.setdefault(record.patient, fold) == fold  # a patient in one fold
    label_of = {r.patient: r.label for r in records}  # synthetic patients have one label each
    for label in (0, 1):
        patients = [f for p, f in by_patient.items() if label_of[p] == label]
        sizes = np.bincount(patients, minlength=4)
        assert sizes.max() - sizes.min() <= 1  # patients dealt round-robin within each class
    reordered = patient_folds(records[::-1], 4, seed=1)[::-1]
    assert reordered == folds
    with pytest.raises(ValueError, match="at least 2"):
        patient_folds(records, 1)


def test_out_of_fold_predictions_cover_every_training_image_once(ensemble_run, synth_small):
    config, result, _, _ = ensemble_run
    oof = pq.read_table(result.run_dir / OOF_FILE).to_pydict()
    training = sorted(r.path for r in discover(synth_small) if r.split == "train")
    assert sorted(oof["path"]) == training
    patients_by_fold = {}
    for patient, fold in zip(oof["patient"], oof["fold"], strict=True):
        patients_by_fold.setdefault(patient, set()).add(fold)
    assert all(len(folds) == 1 for folds in patients_by_fold.values())
    metrics = read_json(result.run_dir / "metrics.json")
    assert metrics["split"] == "out-of-fold" and metrics["counts"]["n"] == len(training)
    assert metrics["roc_auc"] == pytest.approx(result.best_auc)
    assert metrics["threshold"] == result.threshold == metrics["threshold_choice"]["threshold"]
    # The ensemble's threshold is chosen on the out-of-fold predictions, each member's on its
    # own validation fold.
    choice = metrics["threshold_choice"]
    assert choice["policy"] == "margin"
    assert choice["interval"][0] <= result.threshold <= choice["interval"][1]
    member_metrics = read_json(member_dir(result.run_dir, 0) / "metrics.json")
    assert member_metrics["threshold_choice"]["policy"] == "margin"
    assert len(metrics["ci95"]["roc_auc"]) == 2
    # Each member validated on its own fold: its validation patients are that fold's patients.
    for k in range(config.folds):
        member = read_json(member_dir(result.run_dir, k) / "config.json")
        val_patients = set(member["data"]["patients"]["val"])
        assert val_patients == {p for p, f in patients_by_fold.items() if f == {k + 1}}


def test_ensemble_run_is_the_mean_of_aligned_member_logits(ensemble_run, synth_small):
    config, result, _, _ = ensemble_run
    model, info = load_run(result.run_dir)
    assert isinstance(model, Ensemble) and info.members == config.folds
    records = discover(synth_small)[:12]
    batch = next(iter(make_scoring_loader(LoaderSpec(records, info.contract, 12, workers=0))))
    members = [load_run(member_dir(result.run_dir, k))[0] for k in range(config.folds)]
    alignment = info.meta["member_alignment"]  # each member on the out-of-fold scale
    assert len(alignment) == config.folds
    with torch.no_grad():
        aligned = [a * m(batch.x) + b for (a, b), m in zip(alignment, members, strict=True)]
        expected = torch.stack(aligned).mean(0)
        torch.testing.assert_close(model(batch.x), expected)


def test_every_stage_takes_the_ensemble_run(ensemble_run, synth_small, tmp_path):
    _, result, _, _ = ensemble_run
    # fp32: a film's bf16 rounding depends on its batch (evaluate's 64, explain's 1).
    evaluation = run_evaluate(
        EvalConfig(
            result.run_dir,
            synth_small,
            out=tmp_path / "eval",
            workers=0,
            bootstrap=0,
            precision="fp32",
        )
    )
    assert evaluation.metrics["members"] == 3 and evaluation.metrics["counts"]["n"] > 0
    explainer = Explainer(result.run_dir, device="cpu", precision="fp32")
    assert explainer.layers == [f"members.{k}.features.6.2" for k in range(3)]
    path = next(iter(evaluation.probabilities))
    explanation = explainer.explain_file(path)
    assert explanation.prob == pytest.approx(evaluation.probabilities[path], abs=1e-5)
    assert explanation.heat.shape == (64, 64) and explanation.heat.max() == pytest.approx(1.0)


def test_resume_keeps_finished_members(ensemble_run):
    config, result, _, _ = ensemble_run
    before = (member_dir(result.run_dir, 0) / "model.pt").stat().st_mtime_ns
    messages = []
    again = run_train_folds(config, resume=True, log=messages.append)
    assert (member_dir(result.run_dir, 0) / "model.pt").stat().st_mtime_ns == before
    assert messages == [f"nothing to do: all 3 members of {result.run_dir} are trained"]
    assert again.best_auc == pytest.approx(result.best_auc) and again.epochs_trained == 0
    # A run killed after its members but before the ensemble: resume rebuilds only that.
    (result.run_dir / "model.pt").unlink()
    messages.clear()
    rebuilt = run_train_folds(config, resume=True, log=messages.append)
    assert (member_dir(result.run_dir, 0) / "model.pt").stat().st_mtime_ns == before
    assert sum("resuming" in m for m in messages) == config.folds
    assert rebuilt.best_auc == pytest.approx(result.best_auc)
    with pytest.raises(ValueError, match="already holds a run"):
        run_train_folds(config, log=lambda _: None)
