"""bench.model_speed builds every runtime it can from a run, times them against eager fp32 and
scores them on labelled images; a runtime whose package is missing is one "skipped" line."""

import importlib.util

from bench import runtimes
from bench.model_speed import main


def test_missing_runtimes_are_skipped_not_fatal(trained_run, kaggle_dir, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec

    def without_bench_extra(name, *args, **kwargs):
        if name in ("openvino", "torchao"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_bench_extra)
    args = [str(trained_run), "--rounds", "1", "--seconds", "0.05", "--batch", "4"]
    main([*args, "--accuracy", str(kaggle_dir / "train")])
    out = capsys.readouterr().out
    assert f"skipped: openvino not installed ({runtimes.BENCH_HINT})" in out
    assert f"skipped: torchao not installed ({runtimes.BENCH_HINT})" in out
    speed = [line for line in out.splitlines() if line.startswith("| cnn | 64 |")]
    names = {line.split(" | ")[2] for line in speed}
    assert {"eager fp32 channels_last", "cxr-fast int8 (torch.ao FX, TorchScript)"} <= names
    assert not any("OpenVINO" in name or "torchao" in name for name in names)
    eager = next(line for line in speed if "eager fp32" in line and "x (" in line)
    assert "| 1.00x (1.00-1.00) |" in eager
    # The accuracy table: eager against itself changes nothing; int8 keeps a real ROC-AUC.
    assert "| cnn | 64 | eager fp32 channels_last | " in out and "| 0.0000 |" in out
