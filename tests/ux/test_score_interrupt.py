"""Issue 15: Ctrl-C during score keeps the rows scored so far and prints the exact command that
finishes the run; running it completes the file."""

import os
import shlex
import signal

import pyarrow.parquet as pq

from cxr_fast.scoring import score
from tests.cli_in_process import run_main


def test_ctrl_c_during_score_keeps_rows_and_names_the_resume_command(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    real_rows = score._rows
    calls = []

    def rows_then_sigint(batch, records, model, *rest):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return real_rows(batch, records, model, *rest)

    monkeypatch.setattr(score, "_rows", rows_then_sigint)
    out = tmp_path / "preds.parquet"
    args = ["score", kaggle_dir, "--model", trained_run, "--out", out, "--batch-size", "8"]
    args += ["--workers", "0", "--chunk-rows", "8", "--device", "cpu"]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("cxr-fast: interrupted: 16 of 39 rows kept"), line
    command = line.split("continue with: ", 1)[1]
    assert command == (f"cxr-fast score {kaggle_dir} --model {trained_run} --out {out} --resume")
    assert not out.exists()

    monkeypatch.setattr(score, "_rows", real_rows)
    code, stdout, err = run_main(monkeypatch, capsys, *shlex.split(command)[1:], "--device", "cpu")
    assert code == 0, err
    assert "16 kept from before" in stdout
    assert pq.read_table(out).num_rows == 39
