"""`score --model RUN --backend auto`: the fastest verified export of this model.pt, else eager."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from cxr_fast.export import export_run, sidecar_path
from cxr_fast.scoring.backend_choice import candidates
from cxr_fast.scoring.score import ScoreConfig, run_score

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run_with_exports(trained_run, synth_small, tmp_path_factory):
    """A copy of the trained run with a TorchScript fp32 and an int8 export inside."""
    run = tmp_path_factory.mktemp("choice") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "last.pt"))
    fp32 = export_run(run, "torchscript", data=synth_small).path
    int8 = export_run(run, "torchscript", precision="int8", data=synth_small).path
    return run, fp32, int8


def _set_speed(path, speedup: float) -> None:
    """Give an export a known measured speed-up (the rule, not the timing, is under test)."""
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    data["speed"]["speedup_vs_eager"] = speedup
    side.write_text(json.dumps(data))


def _score(run, archive, out, **options):
    summary = run_score(
        ScoreConfig(archive=archive, model=run, out=out, device="cpu", workers=0, **options)
    )
    return summary, pq.read_schema(out).metadata


def test_fastest_verified_export_wins_and_is_named(run_with_exports, kaggle_dir, tmp_path):
    run, fp32, int8 = run_with_exports
    _set_speed(fp32, 1.3)
    _set_speed(int8, 2.5)
    found, _ = candidates(run, CPU)
    assert [c.path for c in found] == [int8, fp32]
    summary, meta = _score(run, kaggle_dir, tmp_path / "p.parquet")
    assert summary.backend == "torchscript-int8"
    assert "model.int8.ts" in summary.backend_choice
    assert json.loads(meta[b"cxr_fast_backend"]) == "torchscript-int8"
    assert "fastest verified export" in json.loads(meta[b"cxr_fast_backend_choice"])


def test_stale_slow_or_other_device_exports_are_passed_over(run_with_exports):
    run, fp32, int8 = run_with_exports
    _set_speed(fp32, 0.8)  # slower than eager where it was built
    _set_speed(int8, 2.5)
    side = sidecar_path(int8)
    data = json.loads(side.read_text())
    data["source_sha256"] = "0" * 64  # made from an earlier model.pt of the same folder
    side.write_text(json.dumps(data))
    try:
        found, passed = candidates(run, CPU)
        assert found == []
        text = " ".join(passed)
        assert "made from another model.pt" in text and "not faster than the eager" in text
        assert candidates(run, torch.device("cuda"))[0] == []  # verified on the CPU only
    finally:
        data["source_sha256"] = json.loads(sidecar_path(fp32).read_text())["source_sha256"]
        side.write_text(json.dumps(data))


def test_without_an_export_eager_runs_and_says_how_to_build_one(trained_run, kaggle_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "last.pt"))
    summary, meta = _score(run, kaggle_dir, tmp_path / "p.parquet")
    assert summary.backend == "eager"
    assert f"cxr-fast export {run} --format auto" in summary.backend_choice
    # An explicit precision keeps the eager model at that precision.
    summary, meta = _score(run, kaggle_dir, tmp_path / "q.parquet", precision="fp32")
    assert json.loads(meta[b"cxr_fast_precision"]) == "fp32"
    assert "as asked" in summary.backend_choice


def test_precision_is_refused_for_an_export_file(run_with_exports, kaggle_dir, tmp_path):
    from cxr_fast.errors import UserInputError

    _, _, int8 = run_with_exports
    with pytest.raises(UserInputError, match="computes at the precision it was exported with"):
        _score(int8, kaggle_dir, tmp_path / "p.parquet", precision="fp32")


def test_an_export_that_fails_to_load_falls_back_to_eager_with_a_warning(
    tmp_path, monkeypatch, capsys
):
    """The sidecar said yes, the file did not load: one stderr line and the eager model."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.errors import CxrFastError
    from cxr_fast.scoring import model as scoring_model

    export = tmp_path / "export" / "model.ts"
    monkeypatch.setattr(scoring_model, "choose_for_run", lambda run, device: (export, "fastest"))

    def failing_load(path, backend, device):
        raise CxrFastError("checksum differs")

    monkeypatch.setattr(scoring_model, "_exported", failing_load)
    eager = scoring_model.ScoringModel(
        lambda x: x, PreprocessContract(image_size=32), 0.5, "eager", "m", "c", CPU
    )
    model = scoring_model._auto(tmp_path, CPU, "auto", lambda: eager)
    assert model.backend == "eager"
    assert model.choice == "eager fp32: model.ts failed to load (checksum differs)"
    err = capsys.readouterr().err
    assert err == f"cxr-fast: {export} unusable (checksum differs); scoring with the eager model\n"
