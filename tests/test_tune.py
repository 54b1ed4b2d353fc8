"""cxr-fast tune: an Optuna study that resumes from its storage and a best.json that
`cxr-fast train --config` accepts."""

import json

from click.testing import CliRunner

from cxr_fast.cli import cli
from cxr_fast.tune import SEARCHED, read_best


def test_tune_resumes_its_study_and_best_json_feeds_train(synth_small, tmp_path):
    out = tmp_path / "tune"
    runner = CliRunner()
    args = [
        "tune", "--data", str(synth_small), "--out", str(out), "--trials", "2", "--epochs", "1",
        "--image-size", "64", "--workers", "0",
    ]  # fmt: skip
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "0 earlier trials" in first.output
    second = runner.invoke(cli, [*args[:6], "1", *args[7:]])
    assert second.exit_code == 0, second.output
    assert "2 earlier trials" in second.output  # the SQLite study was continued
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
    assert train["image_size"] == 64 and train["epochs"] == 1
    assert train["batch_size"] == 8  # the command line wins over best.json
    assert train["augment"]["rotate_deg"] == 7.0 * params["aug_strength"]
