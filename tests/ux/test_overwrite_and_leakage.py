"""Issue 15: one overwrite policy (data synth, evaluate; export in test_export_and_cam_run,
score and train in their own tests) and leakage warnings for evaluate and calibrate."""

import shutil

from cxr_fast.calibrate import run_calibrate
from cxr_fast.evaluate import EvalConfig, default_out_dir, run_evaluate
from tests.cli_in_process import run_main


def test_synth_refuses_a_non_empty_folder_unless_overwrite(tmp_path, monkeypatch, capsys):
    out = tmp_path / "d"
    args = ("data", "synth", out, "--n", "4", "--min-size", "32", "--max-size", "40")
    assert run_main(monkeypatch, capsys, *args, "--workers", "1")[0] == 0
    code, _, err = run_main(monkeypatch, capsys, *args, "--seed", "1", "--workers", "1")
    assert code == 2 and "is not empty: pass --overwrite" in err
    code, _, _ = run_main(
        monkeypatch, capsys, *args, "--seed", "1", "--workers", "1", "--overwrite"
    )
    assert code == 0
    assert len(list(out.rglob("*.jpeg"))) == 4  # replaced, not merged


def test_evaluate_folders_never_collide_and_other_data_is_not_overwritten(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    a, b = tmp_path / "site_a" / "test", tmp_path / "site_b" / "test"
    shutil.copytree(kaggle_dir / "train" / "NORMAL", a / "NORMAL")
    shutil.copytree(kaggle_dir / "train" / "PNEUMONIA", a / "PNEUMONIA")
    shutil.copytree(a, b)
    (b / "NORMAL" / sorted(p.name for p in (b / "NORMAL").iterdir())[0]).unlink()
    assert default_out_dir(trained_run, a) != default_out_dir(trained_run, b)
    out = tmp_path / "eval"
    config = EvalConfig(trained_run, a, out=out, device="cpu", workers=0, bootstrap=0)
    run_evaluate(config)
    run_evaluate(config)  # the same evaluation again: fine
    code, _, err = run_main(
        monkeypatch, capsys, "evaluate", trained_run, "--data", b, "--out", out,
        "--device", "cpu", "--workers", "0", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 2 and "holds an evaluation of other data" in err
    result = run_evaluate(
        EvalConfig(trained_run, b, out=out, device="cpu", workers=0, bootstrap=0, overwrite=True)
    )
    assert result.metrics["data"] == str(b)


def test_evaluate_and_calibrate_on_training_patients_warn(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    code, out, err = run_main(
        monkeypatch, capsys, "evaluate", trained_run, "--data", synth_small,
        "--out", tmp_path / "e", "--device", "cpu", "--workers", "0", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    assert "warning:" in err and "were in the run's training data" in err
    # The run, the data and where the threshold came from, before the numbers.
    header = out.splitlines()[:2]
    assert header[0] == f"run {trained_run} on {synth_small}: 160 images", out
    assert header[1].startswith("threshold ") and " from the run (" in header[1], out
    import json

    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["leakage"]["training_patients"] > 0
    result = run_calibrate(
        trained_run, synth_small, tmp_path / "cal", device="cpu", workers=0, bootstrap=0
    )
    assert result.leakage["training_patients"] > 0
    saved = json.loads((tmp_path / "cal" / "metrics.json").read_text())
    assert saved["leakage"] == result.leakage
