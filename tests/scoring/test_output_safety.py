"""Issue 26: one output, one run at a time; a full disk and damaged chunks are said in one line
and never lose the rows already on disk."""

import errno
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.discover import discover
from cxr_fast.errors import Interrupted
from cxr_fast.outputs import exclusive_output, lock_path
from cxr_fast.scoring import parquet_out
from cxr_fast.scoring.parquet_out import staging_dir
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.cli_in_process import assert_one_line, run_main


def _score_args(trained_run: Path, archive: Path, out: Path, *more: str) -> list:
    return ["score", archive, "--model", trained_run, "--out", out, "--device", "cpu", *more]


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
        assert_one_line(code, err, f"another cxr-fast score is writing {out} (pid {first.pid})")
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
    line = assert_one_line(code, err, "the disk is full", f"{kept} of 160 rows are kept")
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


def _flip_a_bit(chunk: Path) -> None:
    """Flip one bit in the last byte of the path column's pages (data, never a page header)."""
    column = pq.ParquetFile(chunk).metadata.row_group(0).column(0)
    start = column.dictionary_page_offset if column.has_dictionary_page else None
    offset = (start or column.data_page_offset) + column.total_compressed_size - 1
    data = bytearray(chunk.read_bytes())
    data[offset] ^= 0x10
    chunk.write_bytes(bytes(data))


def test_resume_scores_the_rows_of_truncated_or_bit_flipped_chunks_again(
    trained_run, synth_small, tmp_path
):
    out = tmp_path / "p.parquet"
    config = ScoreConfig(
        archive=synth_small,
        model=trained_run,
        out=out,
        device="cpu",
        workers=0,
        batch_size=8,
        rows_per_chunk=8,
        chunk_seconds=1000,
    )
    batches = []

    def progress(n: int) -> None:
        batches.append(n)
        if len(batches) == 6:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_score(config, progress=progress)
    chunks = sorted(staging_dir(out).glob("chunk-*.parquet"))
    assert len(chunks) == 6
    chunks[1].write_bytes(chunks[1].read_bytes()[: chunks[1].stat().st_size // 2])  # truncated
    _flip_a_bit(chunks[3])
    (staging_dir(out) / "chunk-000007.tmp").write_bytes(b"PAR1 an interrupted write")

    args = ["score", synth_small, "--model", trained_run, "--out", out, "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "-m", "cxr_fast", *map(str, args), "--workers", "0", "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "2 chunks unreadable: their rows are scored again" in result.stderr
    assert "32 kept from before" in result.stdout  # 6 chunks of 8 rows, 2 of them dropped
    resumed = pq.read_table(out, columns=["path", "prob_pneumonia"]).to_pydict()
    assert len(resumed["path"]) == len(set(resumed["path"])) == 160
    assert set(resumed["path"]) == {r.path for r in discover(synth_small)}
    run_score(replace(config, out=tmp_path / "whole.parquet"))  # the same archive, uninterrupted
    whole = pq.read_table(tmp_path / "whole.parquet", columns=["path", "prob_pneumonia"])
    expected = dict(zip(*whole.to_pydict().values(), strict=True))
    got = dict(zip(resumed["path"], resumed["prob_pneumonia"], strict=True))
    assert got.keys() == expected.keys()
    for path, prob in got.items():
        assert prob == pytest.approx(expected[path], abs=1e-5), path


def test_a_forked_worker_that_outlives_its_scorer_holds_no_lock(tmp_path):
    """A decoding worker forked while the scorer held the lock, left behind when the scorer
    died: the next run on the same output is not refused because of it."""
    out = tmp_path / "p.parquet"
    code = (
        "import os, sys, time; from pathlib import Path; "
        "from cxr_fast.outputs import exclusive_output\n"
        f"with exclusive_output(Path({str(out)!r})):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        os.close(1); os.close(2); time.sleep(30); os._exit(0)\n"
        "    print(child, flush=True); os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    orphan = int(done.stdout)
    try:
        os.kill(orphan, 0)  # still alive, holding the inherited descriptor
        with exclusive_output(out):
            pass
    finally:
        os.kill(orphan, 9)
