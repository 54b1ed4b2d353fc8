"""``cxr-fast adapt`` end to end on a tiny ensemble: refusals, labels never read, a run every
stage takes."""

import json
import shutil

import pyarrow.parquet as pq
import torch

from cxr_fast.adapt.adapt_stage import run_adapt
from cxr_fast.configs import AdaptConfig, EvalConfig
from cxr_fast.data.discover import discover
from cxr_fast.evaluate import run_evaluate
from cxr_fast.run_folder import MODEL_FILE, read_run, sha256
from tests.cli_in_process import assert_one_line, run_main


def _adapt(run, data, out, method="adabn+shift"):
    config = AdaptConfig(run, data, out, method=method, export="none", workers=0)
    return run_adapt(config, log=lambda _: None)


def test_fewer_than_100_films_are_refused_in_one_line(
    tiny_ensemble, kaggle_dir, tmp_path, monkeypatch, capsys
):
    code, _, err = run_main(
        monkeypatch, capsys, "adapt", tiny_ensemble, "--data", kaggle_dir, "--out", tmp_path / "a"
    )
    assert_one_line(code, err, "39 images", "at least 100")
    assert not (tmp_path / "a").exists()


def test_labels_are_never_read_the_same_films_flat_under_new_names_adapt_alike(
    tiny_ensemble, synth_small, tmp_path
):
    flat = tmp_path / "flat"
    flat.mkdir()
    # New names that sort in another order, no class folders: nothing left to read a label from.
    for i, record in enumerate(reversed(discover(synth_small))):
        shutil.copyfile(record.path, flat / f"film{i:04d}.jpeg")
    kaggle = _adapt(tiny_ensemble, synth_small, tmp_path / "kaggle")
    renamed = _adapt(tiny_ensemble, flat, tmp_path / "renamed")
    assert kaggle.threshold_after == renamed.threshold_after
    assert kaggle.adaptation["shift"] == renamed.adaptation["shift"]
    films = kaggle.adaptation["films"]
    assert films["content_sha256"] == renamed.adaptation["films"]["content_sha256"]
    assert films["paths_sha256"] != renamed.adaptation["films"]["paths_sha256"]
    state, _ = read_run(tmp_path / "kaggle")
    state_flat, info = read_run(tmp_path / "renamed")
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, state_flat[name], rtol=0, atol=0)
    record = info.meta["adaptation"]
    assert record["labels_read"] is False and record["method"] == "adabn+shift"
    assert films["n"] == 160 and record["batchnorm"]["films"] == 160
    assert record["source_model_sha256"] == sha256(tiny_ensemble / MODEL_FILE)
    assert info.threshold == kaggle.threshold_after and info.meta["members"] == 2


def test_the_adapted_run_is_a_run_evaluate_takes_and_adapt_refuses_again(
    tiny_ensemble, synth_small, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "site"
    result = _adapt(tiny_ensemble, synth_small, out, method="shift")
    state, _ = read_run(tiny_ensemble)
    adapted, _ = read_run(out)
    # shift moves only the threshold: the weights are the run's own.
    assert all(torch.equal(state[k], adapted[k]) for k in state)
    metrics = run_evaluate(EvalConfig(out, synth_small, workers=0, bootstrap=0)).metrics
    assert metrics["threshold"] == result.threshold_after
    assert "adapted run: " in result.summary() and "labels not read" in result.summary()
    assert json.loads((out / "config.json").read_text())["adaptation"]["method"] == "shift"
    code, _, err = run_main(
        monkeypatch, capsys, "adapt", out, "--data", synth_small, "--out", tmp_path / "again"
    )
    assert_one_line(code, err, "adapted already")


def test_the_cli_adapts_exports_and_score_names_the_adaptation(
    tiny_ensemble, synth_small, kaggle_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "site"
    code, stdout, err = run_main(
        monkeypatch, capsys, "adapt", tiny_ensemble, "--data", synth_small, "--out", out,
        "--workers", "0",
    )  # fmt: skip
    assert code == 0, stdout + err
    assert "labels not read" in stdout and f"adapted run: {out}" in stdout
    sidecars = list((out / "export").glob("*.json"))
    assert len(sidecars) == 1, stdout  # the adapted run's own export, sealed with its threshold
    side = json.loads(sidecars[0].read_text())
    _, info = read_run(out)
    assert side["source_sha256"] == sha256(out / MODEL_FILE)
    assert side["threshold"] == info.threshold and side["adaptation"]["labels_read"] is False
    preds = tmp_path / "p.parquet"
    code, stdout, err = run_main(
        monkeypatch, capsys, "score", kaggle_dir, "--model", out, "--out", preds, "--workers", "0"
    )
    assert code == 0, stdout + err
    meta = pq.read_schema(preds).metadata
    source = json.loads(meta[b"cxr_fast_threshold_source"])
    assert source["adaptation"]["method"] == AdaptConfig.method
    assert json.loads(meta[b"cxr_fast_threshold"]) == info.threshold
