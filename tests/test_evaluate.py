"""Evaluation reads preprocessing and threshold from the run and reports scikit-learn's numbers."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from cxr_fast.cli import cli
from cxr_fast.data.augment import Augment
from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.export import export_run
from cxr_fast.inference import sigmoid
from cxr_fast.precision import resolve_precision
from cxr_fast.run_folder import load_run
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import AugmentOptions
from tests.cli_in_process import assert_one_line, run_main


def _independent_probs(run_dir, data):
    model, info = load_run(run_dir)
    records = discover(data)
    # The batch size evaluate uses: a different one may move a logit by 1e-7 and flip a
    # prediction that sits on the threshold.
    batches = make_scoring_loader(LoaderSpec(records, info.contract, 64, workers=0), "torch")
    fp32 = resolve_precision("fp32", torch.device("cpu"))
    index, logits, _ = module_model(model, info.contract, fp32).predict(batches)
    return np.array([records[i].label for i in index]), sigmoid(logits), info


def test_metrics_equal_scikit_learn_with_the_runs_threshold(trained_run, synth_small, tmp_path):
    # fp32 like the independent computation (bf16 is the default on a CPU that has it).
    result = run_evaluate(
        EvalConfig(
            trained_run,
            synth_small,
            out=tmp_path,
            device="cpu",
            workers=0,
            bootstrap=200,
            precision="fp32",
        )
    )
    labels, probs, info = _independent_probs(trained_run, synth_small)
    predicted = (probs >= info.threshold).astype(int)
    metrics = result.metrics
    assert metrics["threshold"] == info.threshold and metrics["threshold_source"] == "run"
    assert metrics["counts"]["n"] == len(discover(synth_small))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert metrics["confusion_matrix"] == confusion_matrix(labels, predicted).tolist()
    lo, hi = metrics["ci95"]["roc_auc"]
    assert lo <= metrics["roc_auc"] <= hi
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert {p.name for p in result.plots.values()} == {
        "confusion_matrix.png",
        "roc.png",
        "pr.png",
        "calibration.png",
    }
    assert all(p.stat().st_size > 1000 for p in result.plots.values())


def test_threshold_override_and_unlabeled_data(trained_run, synth_small, tmp_path, samples_dir):
    everything_positive = run_evaluate(
        EvalConfig(
            trained_run,
            synth_small,
            threshold=0.0,
            out=tmp_path,
            device="cpu",
            workers=0,
            bootstrap=0,
        )
    )
    assert everything_positive.metrics["recall"] == 1.0
    assert everything_positive.metrics["threshold_source"] == "--threshold"
    with pytest.raises(ValueError, match="no label"):
        run_evaluate(EvalConfig(trained_run, samples_dir, device="cpu", workers=0))


def test_cli_train_dry_run_and_evaluate(trained_run, synth_small, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "train",
            "--data",
            str(synth_small),
            "--out",
            str(tmp_path / "x"),
            "--dry-run",
            "--epochs",
            "3",
            "--erase",
            "0.3",
            "--crop",
            "0.85",
            "--zoom",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["train"]["erase"] == 0.3  # recorded in config.json with the rest of the recipe
    assert plan["train"]["augment"]["scale"] == 0.3  # --zoom sets the zoom range alone
    rotate = Augment().rotate_deg * AugmentOptions.aug_strength
    assert plan["train"]["augment"]["rotate_deg"] == rotate  # the rest from --aug-strength
    assert plan["contract"]["crop"] == 0.85  # in the contract every model.pt carries
    # Training precision: bf16 autocast on CPUs with native bf16, fp32 elsewhere.
    assert plan["train"]["epochs"] == 3
    assert plan["precision"] == resolve_precision("auto", torch.device("cpu")).name
    # The default ensemble: every member's fold, each holding all 160 films.
    assert plan["images"]["train"] == 160
    assert all(f["train"] + f["val"] == 160 for f in plan["images"]["folds"])
    assert not (tmp_path / "x").exists()

    result = runner.invoke(
        cli,
        [
            "evaluate",
            str(trained_run),
            "--data",
            str(synth_small),
            "--out",
            str(tmp_path / "ev"),
            "--workers",
            "0",
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "PNEUMONIA" in result.output
    assert "calibration.png" in result.output


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_unreadable_files_are_counted_not_fatal(
    trained_run, kaggle_dir, samples_dir, tmp_path, monkeypatch, loader
):
    from cxr_fast.data.bad_file_scan import CACHE_ENV
    from cxr_fast.data.dali_pipeline import dali_available
    from tests.bad_files import write_special_files

    if loader == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    import shutil

    data = tmp_path / "data"
    shutil.copytree(kaggle_dir, data)
    normal = data / "train" / "NORMAL"
    jpeg = (samples_dir / "16747_3_1.jpg").read_bytes()
    (normal / "IM-9001-0001.jpeg").write_bytes(jpeg[: len(jpeg) // 2])
    (normal / "IM-9002-0001.jpeg").write_text("not an image\n")
    write_special_files(normal)
    result = run_evaluate(
        EvalConfig(
            trained_run,
            data,
            out=tmp_path / "eval",
            device="cpu",
            workers=2,
            bootstrap=0,
            loader=loader,
        )
    )
    assert result.metrics["n_skipped"] == 5
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in result.metrics["skipped"]) == [
        "IM-9001-0001.jpeg",
        "IM-9002-0001.jpeg",
        "pipe.jpeg",
        "socket.png",
        "zero.jpeg",
    ]
    assert len(result.probabilities) == len(discover(kaggle_dir))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["n_skipped"] == 5


def test_films_the_gate_refuses_are_left_out_and_counted(trained_run, kaggle_dir, tmp_path):
    """A blank page among the labelled films: left out of the metrics, counted, and named."""
    import numpy as np
    from PIL import Image

    from cxr_fast.evaluate import EvalConfig, run_evaluate
    from cxr_fast.gate.store import fit_and_store

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    fit_and_store(run, kaggle_dir)
    data = tmp_path / "data"
    shutil.copytree(kaggle_dir, data)
    Image.fromarray(np.full((512, 512), 200, np.uint8)).save(
        data / "train" / "NORMAL" / "blank.png"
    )
    films = len(list(kaggle_dir.rglob("*.jpeg")))
    result = run_evaluate(EvalConfig(run, data, workers=0, bootstrap=0))
    assert result.metrics["n_not_cxr"] == 1
    assert result.metrics["not_cxr"][0]["path"].endswith("blank.png")
    assert result.metrics["counts"]["n"] == films
    assert "not a chest X-ray by the input gate" in result.summary()
    kept = run_evaluate(
        EvalConfig(run, data, workers=0, bootstrap=0, accept_ood=True, overwrite=True)
    )
    assert kept.metrics["counts"]["n"] == films + 1


def test_an_export_evaluates_to_the_roc_auc_score_gives_it(trained_run, synth_small, tmp_path):
    # Outside RUN/export/: the shared run's `score --backend auto` must not pick it up.
    export = export_run(trained_run, "torchscript", out=tmp_path / "model.ts", device="cpu")
    common = ["--device", "cpu", "--workers", "0"]
    evaluate = ["evaluate", str(export.path), "--data", str(synth_small), *common]
    result = CliRunner().invoke(cli, [*evaluate, "--bootstrap", "0", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{") :])
    assert metrics["backend"] == "torchscript-fp32" and metrics["run"] == str(export.path)
    assert metrics["model_sha256"] == json.loads(export.sidecar.read_text())["file_sha256"]
    # The sidecar names the run it came from: its training patients are checked for leakage.
    assert metrics["leakage"] is not None
    assert (tmp_path / "eval").is_dir()  # beside the file, not inside the run
    preds = tmp_path / "p.parquet"
    score = ["score", str(synth_small), "--model", str(export.path), "--out", str(preds)]
    scored = CliRunner().invoke(cli, [*score, *common])
    assert scored.exit_code == 0, scored.output
    table = pq.read_table(preds, columns=["path", "prob_pneumonia"]).to_pylist()
    label = {r.path: r.label for r in discover(synth_small)}
    truth = [label[row["path"]] for row in table]
    probs = [row["prob_pneumonia"] for row in table]
    assert metrics["counts"]["n"] == len(table)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, probs), abs=1e-9)


def test_an_export_refuses_tta_and_precision_in_one_line(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    export = export_run(trained_run, "torchscript", out=tmp_path / "model.ts", device="cpu")
    for flag, needle in (
        (["--tta"], "export it with --tta"),
        (["--precision", "fp32"], "--precision"),
    ):
        args = ["evaluate", export.path, "--data", synth_small, "--workers", "0", *flag]
        code, _, err = run_main(monkeypatch, capsys, *args)
        assert_one_line(code, err, needle)
