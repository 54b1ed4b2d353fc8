"""torchrun with 2 CPU processes (gloo): DDP training and a coordinated scoring job."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cxr_fast.data.discover import discover
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export.auto import auto_export
from cxr_fast.export.common import default_out_path
from cxr_fast.precision import resolve_precision
from cxr_fast.run_folder import load_run
from cxr_fast.scoring.model import module_model
from cxr_fast.scoring.score import ScoreConfig, run_score
from cxr_fast.training.config import TrainConfig
from cxr_fast.training.data import select_train_val

TIMEOUT_S = 420


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "cxr_fast", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ddp_run(synth_small, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ddp") / "run"
    # --stretch 0: tests.training.commands.MECHANICS_AUGMENT says why.
    result = _torchrun(
        "train", "--data", str(synth_small), "--out", str(out), "--epochs", "2", "--arch", "cnn",
        "--image-size", "64", "--batch-size", "16", "--lr", "0.003", "--workers", "0",
        "--device", "cpu", "--loader", "torch", "--val-fraction", "0.25", "--stretch", "0",
    )  # fmt: skip
    return out, result


def test_only_rank_0_writes_and_logs(ddp_run):
    out, result = ddp_run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "export",  # the default --export auto, built by rank 0 alone
        "last.pt",
        "metrics.json",
        "model.pt",
        "train_log.jsonl",
    ]
    assert result.stdout.count("export: building") == 1
    fmt, precision, _ = auto_export("cnn", torch.device("cpu"))
    name = default_out_path(out, fmt, precision).name
    assert result.stdout.count(f"export: {name} ({fmt} {precision}, verified") == 1
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert all(entry["processes"] == 2 for entry in log)
    assert result.stdout.count("epoch 1/2:") == 1
    assert "DDP over 2 processes" in result.stdout


def test_validation_auc_equals_single_process_evaluation(ddp_run, synth_small):
    _check_validation_against_one_process(ddp_run[0], synth_small)


def test_dali_readers_shard_under_ddp(synth_small, tmp_path):
    out = tmp_path / "run"
    _torchrun(
        "train", "--data", str(synth_small), "--out", str(out), "--epochs", "1", "--arch", "cnn",
        "--image-size", "64", "--batch-size", "16", "--workers", "1", "--device", "cpu",
        "--loader", "dali", "--val-fraction", "0.25", "--export", "none",
        # fp32: the check below evaluates through the PIL loader, and bf16 rounding would turn
        # DALI's and PIL's few-thousandths pixel differences into reordered logits.
        "--precision", "fp32",
    )  # fmt: skip
    _check_validation_against_one_process(out, synth_small)


def _check_validation_against_one_process(out: Path, synth_small: Path) -> None:
    saved = json.loads((out / "metrics.json").read_text())
    saved_config = json.loads((out / "config.json").read_text())
    config = TrainConfig.from_dict(saved_config["train"])
    val = select_train_val(discover(synth_small), config.val_fraction, config.seed).val
    model, info = load_run(out)
    loader = make_scoring_loader(LoaderSpec(val, info.contract, 64, workers=0), "torch")
    precision = resolve_precision(saved_config["precision"], torch.device("cpu"))
    index, logits, labels = module_model(model, info.contract, precision).predict(
        loader
    )  # the precision the run validated with (bf16 autocast where the CPU has it)
    assert sorted(index.tolist()) == list(range(len(val)))
    assert saved["counts"]["n"] == len(val)  # the whole validation set, not one shard
    assert saved["roc_auc"] == pytest.approx(roc_auc_score(labels, logits), abs=1e-6)


def test_two_rank_score_writes_every_file_once_then_success(trained_run, synth_small, tmp_path):
    out, cams = tmp_path / "preds", tmp_path / "cams"
    result = _torchrun(
        "score", str(synth_small), "--model", str(trained_run), "--out", str(out),
        "--workers", "0", "--device", "cpu", "--cam-dir", str(cams), "--cam-top", "3",
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "_SUCCESS",
        "_metrics.json",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    paths = ds.dataset(str(out), format="parquet").to_table(columns=["path"])["path"].to_pylist()
    assert sorted(paths) == sorted(r.path for r in discover(synth_small))
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == len(paths)
    single = run_score(
        ScoreConfig(archive=synth_small, model=trained_run, out=tmp_path / "one.parquet",
                    device="cpu", workers=0)
    )  # fmt: skip
    merged = json.loads((out / "_metrics.json").read_text())
    alone = json.loads(single.metrics_path.read_text())
    assert merged["roc_auc"] == pytest.approx(alone["roc_auc"], abs=1e-6)
    assert merged["counts"] == alone["counts"] and merged["parts"] == 2
    assert np.isclose(merged["accuracy"], alone["accuracy"])
    # One summary, from rank 0, of the whole job.
    files = len(paths)
    assert result.stdout.count(" rows (") == 1, result.stdout
    assert f"{files} rows ({files} ok" in result.stdout and f"-> {out}\n" in result.stdout
    assert f"{files} images in" in result.stdout and "Grad-CAM overlays: 3 in" in result.stdout
    # The 3 most suspicious films of the whole archive, not 3 per part.
    table = ds.dataset(str(out), format="parquet").to_table().to_pylist()
    top = sorted(table, key=lambda r: (-r["prob_pneumonia"], r["path"]))[:3]
    drawn = {r["path"] for r in table if r["cam_path"]}
    assert drawn == {r["path"] for r in top} and len(list(cams.glob("*.cam.png"))) == 3


def test_resume_under_torchrun(synth_small, tmp_path):
    out = tmp_path / "run"
    common = ["--image-size", "48", "--batch-size", "16", "--workers", "0", "--device", "cpu"]
    common += ["--export", "none"]
    _torchrun(
        "train",
        "--data",
        str(synth_small),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--arch",
        "cnn",
        *common,
    )
    resumed = _torchrun("train", "--resume", "--out", str(out), "--epochs", "2")
    assert "resuming" in resumed.stdout and resumed.stdout.count("epoch 2/2:") == 1
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
