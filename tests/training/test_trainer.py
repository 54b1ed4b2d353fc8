"""Training end to end on tiny synthetic data: it learns, the run folder is complete and
self-describing, checkpoints round-trip, and a SIGKILLed run resumes to the same rule."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.precision import resolve_precision
from cxr_fast.run_folder import load_run, read_json
from cxr_fast.scoring.model import module_model
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.trainer import run_train
from tests.training.commands import MECHANICS_AUGMENT, train_command

TINY = dict(
    augment=MECHANICS_AUGMENT,
    arch="cnn",
    image_size=64,
    batch_size=16,
    val_fraction=0.25,
    lr=3e-3,
    warmup_epochs=0.5,
    workers=0,
    folds=1,
    export="none",
)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=str(synth_small), out=str(out), epochs=8, patience=8, **TINY)
    return run_train(config, log=lambda _: None)


def test_tiny_run_learns_within_a_few_dozen_steps(tiny_run):
    log = _log(tiny_run.run_dir)
    assert len(log) == 8  # 115 training images / 16 = 7 steps an epoch: 56 steps in all
    assert tiny_run.best_auc > 0.9
    assert max(entry["val_roc_auc"] for entry in log) == tiny_run.best_auc


def test_run_folder_is_complete_and_plain_data(tiny_run):
    run_dir = tiny_run.run_dir
    checkpoint = torch.load(run_dir / "model.pt", weights_only=True)
    meta = checkpoint["meta"]
    assert meta["arch"] == "cnn" and meta["contract"]["image_size"] == 64
    assert meta["epoch"] == tiny_run.best_epoch
    config = read_json(run_dir / "config.json")
    assert config["contract"] == meta["contract"]
    assert config["data"]["counts"]["train"]["NORMAL"] > 0
    assert set(config["data"]["patients"]["train"]).isdisjoint(config["data"]["patients"]["val"])
    assert config["versions"]["torch"] and config["seed"] == 0
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["threshold"] == meta["threshold"] == tiny_run.threshold
    assert metrics["roc_auc"] == pytest.approx(tiny_run.best_auc)
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*"))


def test_checkpoint_round_trip_gives_identical_logits(tiny_run, synth_small):
    model, info = load_run(tiny_run.run_dir)
    records = discover(synth_small)[:20]
    batches = list(make_scoring_loader(LoaderSpec(records, info.contract, 8, workers=0), "torch"))
    with torch.no_grad():
        first = torch.cat([model(b.x) for b in batches])
        reloaded, _ = load_run(tiny_run.run_dir)
        second = torch.cat([reloaded(b.x) for b in batches])
    assert torch.equal(first, second)
    fp32 = resolve_precision("fp32", torch.device("cpu"))
    _, logits, _ = module_model(reloaded, info.contract, fp32).predict(batches)
    np.testing.assert_array_equal(logits, first.reshape(-1).numpy())


def test_an_existing_run_is_not_overwritten(tiny_run, synth_small):
    config = TrainConfig(data=str(synth_small), out=str(tiny_run.run_dir), epochs=1, **TINY)
    with pytest.raises(ValueError, match="--resume"):
        run_train(config, log=lambda _: None)


def test_sigkill_after_first_epoch_then_resume(synth_small, tmp_path):
    out = tmp_path / "killed"
    epochs = 12
    process = subprocess.Popen(
        train_command(synth_small, out, "--epochs", str(epochs)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log_path = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    state_path = out / "last.pt"
    while not (state_path.exists() and log_path.exists() and log_path.read_text().strip()):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    done_before = len(_log(out))
    assert 1 <= done_before < epochs

    resumed = subprocess.run(
        [sys.executable, "-m", "cxr_fast", "train", "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} after epoch" in resumed.stdout

    log = _log(out)
    assert [entry["epoch"] for entry in log] == list(range(1, epochs + 1))
    aucs = [entry["val_roc_auc"] for entry in log]
    best_epoch = 1 + int(np.argmax(aucs))  # first epoch reaching the highest AUC
    meta = torch.load(out / "model.pt", weights_only=True)["meta"]
    assert meta["epoch"] == best_epoch
    assert [e["epoch"] for e in log if e["best"]][-1] == best_epoch
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["progress"]["epoch"] == epochs


def test_resume_before_any_saved_epoch_starts_over(synth_small, tmp_path):
    out = tmp_path / "early"
    config = TrainConfig(data=str(synth_small), out=str(out), epochs=2, **TINY)
    run_train(config, log=lambda _: None)
    (out / "last.pt").unlink()  # as if killed between the log line and the state file
    messages = []
    result = run_train(config, resume=True, log=messages.append)
    assert "no finished epoch was saved" in messages[0]
    assert [entry["epoch"] for entry in _log(out)] == [1, 2]
    assert result.epochs_done == 2
