"""cxr-fast tune: an Optuna study that resumes from its storage and a best.json that
`cxr-fast train --config` accepts."""

import json

import optuna
from click.testing import CliRunner

from cxr_fast.cli import cli
from cxr_fast.training.config import TrainConfig
from cxr_fast.tune import SEARCHED, _save_plots, read_best, varied_params


def test_tune_resumes_its_study_and_best_json_feeds_train(synth_small, tmp_path):
    out = tmp_path / "tune"
    runner = CliRunner()
    args = [
        "tune", "--data", str(synth_small), "--out", str(out), "--trials", "2", "--epochs", "1",
        "--image-size", "64", "--workers", "0",
    ]  # fmt: skip
    first = runner.invoke(cli, [*args[:6], "1", *args[7:]])
    assert first.exit_code == 0, first.output
    assert "0 earlier trials" in first.output
    # One trial ranks no parameter: no importance plot, and a note saying why.
    assert "after 1 trial: " in first.output
    assert "note: no importance plot (1 completed trial" in first.output
    assert not (out / "importance.png").exists()
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert ": 1 earlier trial\n" in second.output  # the SQLite study was continued
    assert "after 3 trials: " in second.output and "no importance plot" not in second.output
    assert (out / "importance.png").stat().st_size > 0
    best = json.loads((out / "best.json").read_text())
    assert set(best["params"]) == set(SEARCHED)
    assert (out / "history.png").stat().st_size > 0
    assert len(list((out / "trials").iterdir())) == 3

    params = read_best(out / "best.json")
    plan = runner.invoke(
        cli,
        ["train", "--config", str(out / "best.json"), "--data", str(synth_small),
         "--out", str(tmp_path / "run"), "--batch-size", "8", "--dry-run"],
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    train = json.loads(plan.output)["train"]
    assert train["lr"] == params["lr"] and train["mixup"] == params["mixup"]
    assert train["image_size"] == 64
    # The trial budget (1 epoch, 1 fold) screened the recipe; train trains it with its own.
    assert best["screened_with"] == {"epochs": 1, "folds": 1, "seed": 0}
    assert train["epochs"] == TrainConfig.epochs and train["folds"] == TrainConfig.folds
    assert train["batch_size"] == 8  # the command line wins over best.json
    assert train["augment"]["rotate_deg"] == 7.0 * params["aug_strength"]


def _study(params: list[dict]) -> optuna.Study:
    """An in-memory study of completed trials with these parameters (arch fixed, as with a
    single --arch)."""
    distributions = {
        "arch": optuna.distributions.CategoricalDistribution(["cnn"]),
        "lr": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True),
    }
    study = optuna.create_study(direction="maximize")
    for i, values in enumerate(params):
        study.add_trial(
            optuna.trial.create_trial(
                params=values, distributions=distributions, value=0.9 + 0.01 * i
            )
        )
    return study


def test_importance_plot_only_over_parameters_that_varied(tmp_path):
    notes = []
    fixed = _study([{"arch": "cnn", "lr": 1e-3}] * 3)
    assert varied_params(fixed) == []
    saved = _save_plots(fixed, tmp_path, notes.append)
    assert [p.name for p in saved] == ["history.png"]
    assert notes == ["note: no importance plot (no parameter varied; it needs two or more "
                     "that differ)"]  # fmt: skip
    varied = _study([{"arch": "cnn", "lr": lr} for lr in (1e-4, 5e-4, 1e-3, 2e-3)])
    assert varied_params(varied) == ["lr"]
    saved = _save_plots(varied, tmp_path, notes.append)
    assert [p.name for p in saved] == ["history.png", "importance.png"] and len(notes) == 1


def test_best_json_trial_budget_is_not_applied_to_train(synth_small, tmp_path):
    """An older best.json recorded its budget under "fixed": train still uses its own epochs
    and folds, and the command line still wins."""
    best = tmp_path / "best.json"
    best.write_text(
        json.dumps({"params": {"lr": 0.002, "arch": "cnn"}, "fixed": {"epochs": 1, "folds": 1}})
    )
    assert read_best(best) == {"lr": 0.002, "arch": "cnn"}
    base = ["train", "--config", str(best), "--data", str(synth_small), "--out",
            str(tmp_path / "run"), "--dry-run"]  # fmt: skip
    plan = CliRunner().invoke(cli, base)
    assert plan.exit_code == 0, plan.output
    train = json.loads(plan.output)["train"]
    assert train["epochs"] == TrainConfig.epochs and train["folds"] == TrainConfig.folds
    assert train["lr"] == 0.002 and train["arch"] == "cnn"
    given = json.loads(CliRunner().invoke(cli, [*base, "--epochs", "2"]).output)["train"]
    assert given["epochs"] == 2
