"""Site calibration: Platt scaling and threshold fitted on a labelled sample, written as a new run
that every stage takes, with the refusals a user needs."""

import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from cxr_fast.calibrate import cross_fit, fit_platt, fit_site, run_calibrate, sample_warnings
from cxr_fast.cli import cli
from cxr_fast.configs import CalibrateConfig
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.export import export_run
from cxr_fast.models.ensemble import TemperatureScaled
from cxr_fast.run_folder import load_run, read_json, sha256
from cxr_fast.scoring.model import load_model
from tests.cli_in_process import assert_one_line, run_main


def test_fit_platt_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, 20_000)
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-(logits / 2.5 - 1.0)))).astype(int)
    temperature, bias = fit_platt(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.05)
    assert bias == pytest.approx(-1.0, abs=0.1)


def test_fit_platt_without_a_prior_does_not_depend_on_its_centre():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, 300)
    labels = (rng.random(300) < 1 / (1 + np.exp(-(logits / 1.5 + 0.7)))).astype(int)
    plain = fit_platt(logits, labels)
    assert fit_platt(logits, labels, center=-2.4) == pytest.approx(plain, abs=1e-5)


def test_fit_platt_prior_pulls_a_small_sample_toward_the_run_as_trained():
    rng = np.random.default_rng(4)
    center = -2.0  # the run's stored threshold, as a logit

    def sample(n):
        logits = rng.normal(0, 3, n)
        # The site's truth: temperature 2, decision 2 logits above the run's threshold.
        labels = (rng.random(n) < 1 / (1 + np.exp(-((logits - center) / 2 - 1)))).astype(int)
        return logits, labels

    def decision(temperature, bias):  # the logit where sigmoid(z / T + b) = 0.5
        return -bias * temperature

    small = sample(40)
    free = fit_platt(*small, center=center)
    held = fit_platt(*small, center=center, prior=3)
    strong = fit_platt(*small, center=center, prior=1e6)
    # The prior moves the decision toward the run's threshold; a very strong one keeps the run.
    assert abs(decision(*held) - center) < abs(decision(*free) - center) - 0.1
    assert strong[0] == pytest.approx(1, abs=1e-3)
    assert decision(*strong) == pytest.approx(center, abs=1e-3)
    # On a large sample the prior is outweighed: both fits find the site's truth.
    large = sample(20_000)
    for fit in (fit_platt(*large, center=center), fit_platt(*large, center=center, prior=3)):
        assert fit[0] == pytest.approx(2, rel=0.05)
        assert decision(*fit) == pytest.approx(center + 2, abs=0.15)


def _shifted_site(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a site where every film scores 2.5 higher than in training (where 0 was the
    right threshold): healthy films cross the trained threshold."""
    labels = (rng.random(n) < 0.6).astype(int)
    logits = np.where(labels == 1, 2.0, -2.0) + rng.normal(0, 1.2, n) + 2.5
    return logits, labels


def test_bayes_calibration_moves_the_threshold_to_the_shifted_site():
    rng = np.random.default_rng(1)
    fit_logits, fit_labels = _shifted_site(rng, 120)  # a site sample's size
    site = fit_site(fit_logits, fit_labels)
    assert site.choice["policy"] == "bayes" and site.choice["threshold"] == 0.5
    assert site.bias < -1.0  # the fitted shift undoes most of the +2.5
    logits, labels = _shifted_site(rng, 20_000)  # films it was not fitted on
    as_trained = ((logits >= 0) == labels).mean()
    calibrated = ((site.probabilities(logits) >= 0.5) == labels).mean()
    best = max(((logits >= t) == labels).mean() for t in np.linspace(-2, 6, 81))
    assert calibrated > as_trained + 0.08
    assert calibrated > best - 0.02


def test_fit_site_keeps_a_target_sensitivity_and_refuses_unknown_policies():
    rng = np.random.default_rng(2)
    logits, labels = _shifted_site(rng, 400)
    site = fit_site(logits, labels, target_sensitivity=0.98)
    pred = site.probabilities(logits) >= site.choice["threshold"]
    assert pred[labels == 1].mean() >= 0.98
    assert site.choice["policy"] == "sensitivity>=0.98"
    with pytest.raises(ValueError, match="bayes, margin, youden"):
        fit_site(logits, labels, policy="sharpest")


@pytest.fixture(scope="module")
def calibrated(trained_run, synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "site"
    return run_calibrate(trained_run, synth_small, out, workers=0, bootstrap=200), out


def test_calibrated_run_shares_the_weights_and_records_the_sample(
    calibrated, trained_run, synth_small
):
    result, out = calibrated
    # A balanced sample the run as trained already fits: nothing to warn about.
    assert result.warnings == ()
    original, original_info = load_run(trained_run)
    model, info = load_run(out)
    assert isinstance(model, TemperatureScaled) and info.temperature == result.temperature
    assert info.bias == result.bias and info.meta["calibration"]["method"] == "platt"
    prior = info.meta["calibration"]["prior"]
    assert prior == {"strength": 3.0, "threshold": original_info.threshold}
    for key, value in original.state_dict().items():
        torch.testing.assert_close(model.model.state_dict()[key], value)
    calibration = info.meta["calibration"]
    n = len([r for r in discover(synth_small) if r.label is not None])
    assert calibration["sample"]["n"] == n == result.n
    assert sum(calibration["sample"]["counts"].values()) == n
    assert calibration["source_model_sha256"] == sha256(trained_run / "model.pt")
    assert info.threshold == result.threshold == calibration["threshold_choice"]["threshold"]
    metrics = read_json(out / "metrics.json")
    assert metrics["before"]["threshold"] == load_run(trained_run)[1].threshold
    assert metrics["after"]["threshold"] == result.threshold
    assert metrics["after"]["ci95"]["accuracy"] is not None


def test_calibrated_probabilities_are_the_platt_scaled_logits(calibrated, trained_run, synth_small):
    result, out = calibrated
    # fp32: bf16 autocast would round the logits before and after the division differently.
    common = dict(workers=0, bootstrap=0, precision="fp32")
    before = run_evaluate(EvalConfig(trained_run, synth_small, out=out.parent / "a", **common))
    after = run_evaluate(EvalConfig(out, synth_small, out=out.parent / "b", **common))
    path = next(iter(before.probabilities))
    p = before.probabilities[path]
    logit = np.log(p / (1 - p))
    expected = 1 / (1 + np.exp(-(logit / result.temperature + result.bias)))
    assert after.probabilities[path] == pytest.approx(expected, abs=1e-4)
    assert after.metrics["temperature"] == result.temperature
    assert after.metrics["bias"] == result.bias
    assert after.metrics["threshold"] == result.threshold


def test_score_names_the_calibration_in_its_metadata(calibrated, synth_small, tmp_path):
    import json

    _, out = calibrated
    preds = tmp_path / "p.parquet"
    result = CliRunner().invoke(
        cli,
        ["score", str(synth_small), "--model", str(out), "--out", str(preds), "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    # Labelled data: the headline numbers are printed, not only the metrics file's path.
    assert "on 160 labelled images: accuracy " in result.output and "ROC-AUC" in result.output
    meta = pq.read_schema(preds).metadata
    source = json.loads(meta[b"cxr_fast_threshold_source"])
    assert source["calibration"]["sample"]["n"] > 0
    assert (
        json.loads(meta[b"cxr_fast_threshold"])
        == read_json(out / "metrics.json")["after"]["threshold"]
    )


def test_refuses_small_or_one_class_samples_in_one_line(trained_run, synth_small, tmp_path):
    small = tmp_path / "small"
    for record in discover(synth_small)[:20]:
        target = small / ("PNEUMONIA" if record.label else "NORMAL")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.path, target)
    one_class = tmp_path / "one"
    shutil.copytree(synth_small / "train" / "PNEUMONIA", one_class / "PNEUMONIA")
    for data, out, message in (
        (small, tmp_path / "x", "at least 50"),
        (one_class, tmp_path / "x", "only PNEUMONIA"),
        (synth_small, trained_run, "new folder"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "cxr_fast", "calibrate", str(trained_run), "--data", str(data),
             "--out", str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def _sample(synth_small, folder, normal: int, pneumonia: int):
    """A site sample of ``normal`` NORMAL and ``pneumonia`` PNEUMONIA films of ``synth_small``."""
    records = discover(synth_small)
    for label, count in ((0, normal), (1, pneumonia)):
        target = folder / ("PNEUMONIA" if label else "NORMAL")
        target.mkdir(parents=True)
        chosen = [r for r in records if r.label == label][:count]
        assert len(chosen) == count
        for record in chosen:
            shutil.copy(record.path, target)
    return folder


@pytest.mark.parametrize("normal, pneumonia", [(49, 1), (45, 5)])
def test_refuses_a_sample_with_too_few_films_of_a_class(
    trained_run, synth_small, tmp_path, normal, pneumonia
):
    data = _sample(synth_small, tmp_path / "site", normal, pneumonia)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "cxr_fast", "calibrate", str(trained_run), "--data", str(data),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{normal} NORMAL and {pneumonia} PNEUMONIA" in lines[0]
    assert "at least 20 of each class" in lines[0] and "--min-per-class" in lines[0]
    assert not out.exists()


def test_min_per_class_lowers_the_bar_with_a_warning(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    data = _sample(synth_small, tmp_path / "site", 45, 5)
    out = tmp_path / "out"
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "calibrate", trained_run, "--data", data, "--out", out,
        "--min-per-class", "5", "--workers", "0",
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning: --min-per-class 5 is below 20" in stderr
    assert "calibrated run:" in stdout and (out / "model.pt").is_file()


def test_a_sensitivity_drop_on_the_sample_is_warned(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    # Few pneumonia films: the fewest errors at this prevalence (bayes) calls fewer of them.
    data = _sample(synth_small, tmp_path / "site", 80, 20)
    code, _, stderr = run_main(
        monkeypatch, capsys, "calibrate", trained_run, "--data", data, "--out",
        tmp_path / "out", "--workers", "0",
    )  # fmt: skip
    assert code == 0, stderr
    metrics = read_json(tmp_path / "out" / "metrics.json")
    before, after = metrics["before"]["sensitivity"], metrics["after"]["sensitivity"]
    assert before - after > 0.05
    warned = [line for line in stderr.splitlines() if "sensitivity on the sample" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert f"{after:.3f}" in warned[0] and f"{before:.3f}" in warned[0]


def test_sample_warnings_only_for_a_drop_beyond_the_margin_or_a_lowered_bar():
    before = {"sensitivity": 0.90, "threshold": 0.3}
    assert sample_warnings(20, before, {"sensitivity": 0.86, "threshold": 0.5}) == []
    assert sample_warnings(20, before, {"sensitivity": 0.95, "threshold": 0.5}) == []
    (drop,) = sample_warnings(20, before, {"sensitivity": 0.80, "threshold": 0.5})
    assert "0.800" in drop and "0.900" in drop and "--target-sensitivity" in drop
    (drop,) = sample_warnings(20, before, {"sensitivity": 0.80, "threshold": 0.5}, 0.8)
    assert "--target-sensitivity" not in drop  # the user chose the level
    (low,) = sample_warnings(10, before, before)
    assert "--min-per-class 10 is below 20" in low


def test_cross_fit_prints_what_the_bench_computes(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    """`calibrate --cross-fit K` judges each patient fold by a calibration fitted without it:
    the same numbers as `cross_fit` on the same logits, in metrics.json and on the console."""
    out = tmp_path / "site"
    result = CliRunner().invoke(
        cli,
        ["calibrate", str(trained_run), "--data", str(synth_small), "--out", str(out),
         "--cross-fit", "3", "--workers", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    crossed = read_json(out / "metrics.json")["cross_fitted"]
    assert crossed["folds"] == 3 and 0 <= crossed["accuracy"] <= 1
    assert "cross-fitted (3 patient folds" in result.output
    assert f"accuracy {crossed['accuracy']:.3f}" in result.output
    assert f"specificity {crossed['specificity']:.3f}" in result.output
    model = load_model(trained_run, torch.device("cpu"))
    records = [r for r in discover(synth_small) if r.label is not None]
    loader = make_scoring_loader(LoaderSpec(records, model.contract, 64, workers=0))
    index, logits, _ = model.predict(loader)
    records = [records[i] for i in index]
    labels = np.array([r.label for r in records])
    prior = CalibrateConfig.prior_strength
    again = cross_fit(records, logits, labels, 3, threshold=model.threshold, prior=prior)
    assert again == crossed
    patients = len({r.patient for r in records})
    code, _, stderr = run_main(
        monkeypatch, capsys, "calibrate", trained_run, "--data", synth_small,
        "--out", tmp_path / "b", "--cross-fit", patients + 1,
    )  # fmt: skip
    assert code == 2 and "--cross-fit must be between 2" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_an_export_calibrates_on_its_own_logits_into_a_run(trained_run, synth_small, tmp_path):
    """The fit is of the logits the export gives (those `evaluate EXPORT` and `score` see); the
    calibrated run is written from the run the export was made from."""
    export = export_run(trained_run, "torchscript", out=tmp_path / "model.ts", device="cpu")
    out = tmp_path / "site"
    result = run_calibrate(export.path, synth_small, out, workers=0, bootstrap=0)
    evaluated = run_evaluate(
        EvalConfig(export.path, synth_small, out=tmp_path / "eval", workers=0, bootstrap=0)
    )
    assert result.before["roc_auc"] == pytest.approx(evaluated.metrics["roc_auc"], abs=1e-9)
    assert result.before["threshold"] == load_run(trained_run)[1].threshold
    model, info = load_run(out)
    assert isinstance(model, TemperatureScaled) and info.temperature == result.temperature
    calibration = info.meta["calibration"]
    assert calibration["source_model_sha256"] == sha256(trained_run / "model.pt")
    assert calibration["fitted_with"]["backend"] == "torchscript-fp32"
    assert calibration["fitted_with"]["sha256"] == sha256(export.path)


def test_an_export_whose_run_is_gone_is_refused_in_one_line(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    export = export_run(run, "torchscript", out=tmp_path / "model.ts", device="cpu")
    shutil.rmtree(run)
    code, _, err = run_main(
        monkeypatch, capsys, "calibrate", export.path, "--data", synth_small,
        "--out", tmp_path / "site", "--workers", "0",
    )  # fmt: skip
    assert_one_line(code, err, "is gone")
    assert not (tmp_path / "site").exists()
