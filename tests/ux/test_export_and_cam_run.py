"""Issue 15: score --cam-run must be the export's source; int8 calibrates on the run's
training records and verifies on its validation records (never test/); export --out does not
write over another run's export without --overwrite."""

import shutil

import pytest
import torch

from cxr_fast.errors import UserInputError
from cxr_fast.export import ExportError, export_run, exporter, load_exported
from cxr_fast.export.source import cam_run_for
from cxr_fast.run_folder import atomic_write_json, read_json
from cxr_fast.scoring.score import ScoreConfig, run_score


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ux-export") / "m.ts"
    return export_run(trained_run, "torchscript", out=out, device="cpu").path


@pytest.fixture(scope="module")
def other_run(trained_run, tmp_path_factory):
    """The same run with one weight changed: another model.pt checksum."""
    run = tmp_path_factory.mktemp("ux-other") / "run"
    shutil.copytree(trained_run, run)
    checkpoint = torch.load(run / "model.pt", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] + 0.01
    torch.save(checkpoint, run / "model.pt")
    return run


def test_score_refuses_a_cam_run_that_is_not_the_exports_source(
    exported, trained_run, other_run, kaggle_dir, tmp_path
):
    config = ScoreConfig(
        archive=kaggle_dir,
        model=exported,
        out=tmp_path / "p.parquet",
        cam_dir=tmp_path / "cams",
        cam_run=other_run,
        device="cpu",
    )
    with pytest.raises(UserInputError, match="not the model that scores"):
        run_score(config)
    assert not (tmp_path / "p.parquet").exists() and not (tmp_path / "cams").exists()
    assert cam_run_for(exported, trained_run) == trained_run
    with pytest.raises(UserInputError, match="--cam-run"):
        cam_run_for(exported, None)  # outside RUN/export/: the hint names --cam-run


def test_export_out_refuses_another_runs_export_unless_overwrite(exported, other_run):
    with pytest.raises(ExportError, match="already holds a torchscript fp32 export of"):
        export_run(other_run, "torchscript", out=exported, device="cpu")
    with pytest.raises(ExportError, match="--overwrite"):
        export_run(other_run, "torchscript", precision="int8", out=exported, device="cpu")
    result = export_run(other_run, "torchscript", out=exported, device="cpu", overwrite=True)
    _, sidecar = load_exported(result.path)
    assert sidecar["source"] == str(other_run.resolve())


def test_int8_calibrates_on_training_records_and_verifies_on_validation(
    trained_run, synth_small, kaggle_dir, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    shutil.copytree(synth_small, data)
    for cls in ("NORMAL", "PNEUMONIA"):  # a test/ split the run never saw
        (data / "test" / cls).mkdir(parents=True)
        for i, src in enumerate(sorted((kaggle_dir / "train" / cls).glob("*.jpeg"))[:6]):
            shutil.copy(src, data / "test" / cls / f"person{900 + i}_x_{i}.jpeg")
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "eval"))
    config = read_json(run / "config.json")
    config["data"]["root"] = config["train"]["data"] = str(data)
    atomic_write_json(config, run / "config.json")

    seen = {}
    real_build, real_check = exporter._build, exporter._check_int8

    def build(*args):
        seen["calibration"] = args[7]
        return real_build(*args)

    def check(eager, exported, records, info, n_cal, films):
        seen["heldout"] = records
        return real_check(eager, exported, records, info, n_cal, films)

    monkeypatch.setattr(exporter, "_build", build)
    monkeypatch.setattr(exporter, "_check_int8", check)
    result = export_run(run, "torchscript", precision="int8", device="cpu")
    patients = config["data"]["patients"]
    assert seen["calibration"] and seen["heldout"]
    assert all("/test/" not in r.path for r in [*seen["calibration"], *seen["heldout"]])
    assert {r.patient for r in seen["calibration"]} <= set(patients["train"])
    assert {r.patient for r in seen["heldout"]} <= set(patients["val"])
    _, sidecar = load_exported(result.path)
    assert "validation records" in sidecar["verification"]["source"]
    # Validation films: no member trained on them, so these alone are called held-out.
    assert sidecar["int8"]["measured_on"].startswith("held-out validation images")
