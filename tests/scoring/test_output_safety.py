"""Issue 26: one output, one run at a time; a full disk and damaged chunks are said in one line
and never lose the rows already on disk."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.discover import discover
from cxr_fast.outputs import exclusive_output, lock_path
from cxr_fast.scoring.parquet_out import staging_dir
from tests.cli_in_process import run_main


def _score_args(trained_run: Path, archive: Path, out: Path, *more: str) -> list:
    return ["score", archive, "--model", trained_run, "--out", out, "--device", "cpu", *more]


def _one_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-fast: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("mode", ["--overwrite", "--resume"])
def test_a_second_run_on_one_output_is_refused_while_the_first_writes(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys, mode
):
    out = tmp_path / "p.parquet"
    staging_dir(out).mkdir()
    (staging_dir(out) / "chunk-000001.parquet").write_bytes(b"the first run's")
    # The first run, in another process: it holds the lock as `cxr-fast score` does.
    code = (
        "import sys, time; from pathlib import Path; "
        "from cxr_fast.outputs import exclusive_output; "
        f"lock = exclusive_output(Path({str(out)!r})); lock.__enter__(); "
        "print('writing', flush=True); sys.stdin.read()"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "writing"
        args = _score_args(trained_run, kaggle_dir, out, mode, "--workers", "0")
        code, _, err = run_main(monkeypatch, capsys, *args)
        _one_line(code, err, f"another cxr-fast score is writing {out} (pid {first.pid})")
        # Refused before touching anything: the first run's chunks are where they were.
        assert (staging_dir(out) / "chunk-000001.parquet").read_bytes() == b"the first run's"
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert not lock_path(out).exists()  # the first run's lock went with it


def test_the_lock_is_released_after_a_run_and_not_left_behind(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "p.parquet"
    with exclusive_output(out):
        code, _, err = run_main(monkeypatch, capsys, *_score_args(trained_run, kaggle_dir, out))
        assert code == 2 and "another cxr-fast score is writing" in err
    assert not lock_path(out).exists()
    args = _score_args(trained_run, kaggle_dir, out, "--workers", "0")
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert pq.read_metadata(out).num_rows == len(discover(kaggle_dir))
    assert not lock_path(out).exists()
