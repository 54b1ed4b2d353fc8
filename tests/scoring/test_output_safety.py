"""Issue 26: one output, one run at a time; a full disk and damaged chunks are said in one line
and never lose the rows already on disk."""

import errno
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.discover import discover
from cxr_fast.outputs import exclusive_output, lock_path
from cxr_fast.scoring import parquet_out
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


def _full_disk() -> OSError:
    return OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left")


@pytest.mark.parametrize("when", ["a chunk", "the output"])
def test_a_full_disk_is_one_line_that_keeps_the_rows_and_says_how_to_resume(
    trained_run, synth_small, tmp_path, monkeypatch, capsys, when
):
    out = tmp_path / "p.parquet"
    if when == "a chunk":  # the third chunk finds the disk full
        real, calls = pq.write_table, []

        def write_table(table, where, **kwargs):
            calls.append(where)
            if len(calls) == 3:
                Path(where).write_bytes(b"PAR1 half")  # what a full disk leaves
                raise _full_disk()
            return real(table, where, **kwargs)

        monkeypatch.setattr(parquet_out.pq, "write_table", write_table)
        kept = 16
    else:  # every chunk is on disk, the published file is not

        class FullWriter(pq.ParquetWriter):
            def write_table(self, table, *args, **kwargs):
                raise _full_disk()

        monkeypatch.setattr(parquet_out.pq, "ParquetWriter", FullWriter)
        kept = 160
    options = ["--workers", "0", "--chunk-rows", "8", "--chunk-seconds", "1000"]
    args = _score_args(trained_run, synth_small, out, *options)
    code, _, err = run_main(monkeypatch, capsys, *args)
    line = _one_line(code, err, "the disk is full", f"{kept} of 160 rows are kept")
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
    assert not list(staging_dir(out).glob("*.tmp"))  # the half-written file is removed
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["cxr-fast", "score"] and command[-1] == "--resume"
    monkeypatch.undo()
    code, _, err = run_main(monkeypatch, capsys, *command[1:], "--device", "cpu", "--workers", "0")
    assert code == 0, err
    paths = pq.read_table(out, columns=["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 160
    assert set(paths) == {r.path for r in discover(synth_small)}
