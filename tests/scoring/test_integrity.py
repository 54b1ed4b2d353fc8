"""Scoring never hangs, never mixes two runs in one output, and a kill keeps the work done."""

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data import collecting_loader
from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.data.discover import discover
from cxr_fast.errors import ResumeMismatchError
from cxr_fast.scoring.parquet_out import staging_dir
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.bad_files import awkward_pngs, write_bad_files, write_special_files


def _score_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    # The timeout only guards against a hang (the bug under test), it measures nothing.
    return subprocess.run(
        [sys.executable, "-m", "cxr_fast", "score", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def awkward_archive(kaggle_dir, samples_dir, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Good films, every bad kind, non-regular files (a FIFO among them) and awkward PNGs."""
    root = tmp_path_factory.mktemp("awkward") / "arch"
    normal = root / "NORMAL"
    normal.mkdir(parents=True)
    expected = {}
    for path in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:4]:
        shutil.copy(path, normal / path.name)
        expected[path.name] = "ok"
    expected.update(write_bad_files(normal, samples_dir))
    expected.update(write_special_files(normal))
    expected.update({p.name: "ok" for p in awkward_pngs(normal, samples_dir)})
    return root, expected


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_an_archive_of_every_awkward_kind_gives_one_row_per_file(
    trained_run, awkward_archive, tmp_path, loader
):
    if loader == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    root, expected = awkward_archive
    out = tmp_path / "p.parquet"
    result = _score_cli(
        str(root),
        "--model",
        str(trained_run),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "2",
        "--loader",
        loader,
    )
    assert result.returncode == 0, result.stderr
    rows = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert len(rows) == pq.read_metadata(out).num_rows  # no duplicates
    assert {name: r["status"] for name, r in rows.items()} == expected
    for name in ("pipe.jpeg", "socket.png", "zero.jpeg"):
        assert rows[name]["error"].startswith("not a regular file"), rows[name]["error"]


def test_data_check_reports_a_fifo_instead_of_hanging(tmp_path, kaggle_dir):
    shutil.copytree(kaggle_dir / "train" / "NORMAL", tmp_path / "NORMAL")
    write_special_files(tmp_path / "NORMAL")
    result = subprocess.run(
        [sys.executable, "-m", "cxr_fast", "data", "check", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    errors = {Path(u["path"]).name: u["error"] for u in report["unreadable"]}
    assert set(errors) == {"pipe.jpeg", "socket.png", "zero.jpeg"}
    assert errors["pipe.jpeg"] == "not a regular file (a FIFO)"


def _killed_run(config: ScoreConfig, after_batches: int) -> None:
    """Score until ``after_batches`` batches are done, then SIGKILL this very process."""
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) >= after_batches:
            os.kill(os.getpid(), signal.SIGKILL)

    run_score(config, progress=progress)


def _chunk_per_batch(trained_run, synth_small, out) -> ScoreConfig:
    # Far more rows per chunk than the archive holds: only the time bound can flush. 0 s: a
    # chunk after every batch (what the default 15 s does on a real archive).
    return ScoreConfig(
        archive=synth_small,
        model=trained_run,
        out=out,
        device="cpu",
        workers=0,
        loader="torch",
        batch_size=8,
        rows_per_chunk=100_000,
        chunk_seconds=0.0,
    )


def _kill_after(config: ScoreConfig, batches: int) -> None:
    """Score in a child process that SIGKILLs itself after ``batches`` batches."""
    child = multiprocessing.get_context("spawn").Process(target=_killed_run, args=(config, batches))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == -signal.SIGKILL


def test_a_kill_keeps_the_work_of_the_last_interval_and_resume_loses_nothing(
    trained_run, synth_small, tmp_path
):
    out = tmp_path / "killed.parquet"
    config = _chunk_per_batch(trained_run, synth_small, out)
    _kill_after(config, 6)
    assert not out.exists()
    chunks = sorted(staging_dir(out).glob("chunk-*.parquet"))
    kept = sum(pq.read_table(c).num_rows for c in chunks)
    assert kept >= 5 * 8  # every finished batch but the one in flight was on disk

    summary = run_score(ScoreConfig(**{**vars(config), "resume": True}))
    assert summary.resumed == kept and summary.scored == 160 - kept
    paths = pq.read_table(out, columns=["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 160
    assert set(paths) == {r.path for r in discover(synth_small)}


def test_resume_with_another_model_refuses_and_keeps_the_partial_output(
    trained_run, synth_small, tmp_path
):
    from cxr_fast.export import export_run

    exported = export_run(trained_run, "torchscript", out=tmp_path / "m.ts", device="cpu").path
    out = tmp_path / "mixed.parquet"
    config = _chunk_per_batch(trained_run, synth_small, out)
    _kill_after(config, 3)
    chunks_before = sorted(staging_dir(out).glob("chunk-*.parquet"))
    assert chunks_before
    other = {**vars(config), "model": exported, "resume": True}
    with pytest.raises(ResumeMismatchError, match="model checksum"):
        run_score(ScoreConfig(**other))
    assert sorted(staging_dir(out).glob("chunk-*.parquet")) == chunks_before
    # The CLI says it in one line, exit 2; --overwrite starts over.
    common = [str(synth_small), "--out", str(out), "--device", "cpu", "--workers", "0"]
    refused = _score_cli(*common, "--model", str(exported), "--resume")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "--overwrite" in refused.stderr and "model checksum" in refused.stderr
    fresh = _score_cli(*common, "--model", str(exported), "--overwrite")
    assert fresh.returncode == 0, fresh.stderr
    assert {json.loads(v) for v in [pq.read_schema(out).metadata[b"cxr_fast_backend"]]} == {
        "torchscript-fp32"
    }
    # Resuming with the same model still works.
    assert _score_cli(*common, "--model", str(exported), "--resume").returncode == 2  # complete


def test_resume_refuses_another_threshold_or_archive(trained_run, synth_small, tmp_path):
    out = tmp_path / "p.parquet"
    config = _chunk_per_batch(trained_run, synth_small, out)
    _kill_after(config, 2)
    moved = tmp_path / "elsewhere"
    shutil.copytree(synth_small, moved)
    with pytest.raises(ResumeMismatchError, match="archive root"):
        run_score(ScoreConfig(**{**vars(config), "archive": moved, "resume": True}))


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_a_failing_dali_pipeline_switches_to_pil_once_and_says_so(
    trained_run, synth_small, tmp_path, monkeypatch, capsys
):
    built = []

    class BrokenDali:
        def __init__(self, *args, **kwargs):
            built.append(1)
            raise RuntimeError("Critical error in pipeline:\nCUDA error: out of memory")

    monkeypatch.setattr(collecting_loader, "DaliLoader", BrokenDali)
    out = tmp_path / "p.parquet"
    summary = run_score(
        ScoreConfig(
            archive=synth_small,
            model=trained_run,
            out=out,
            device="cpu",
            workers=0,
            loader="dali",
            batch_size=16,
        )
    )
    assert len(built) == 1  # not one rebuilt pipeline per batch
    assert summary.loader == "torch" and summary.ok == 160
    assert "out of memory" in summary.loader_fallback
    metadata = pq.read_schema(out).metadata
    assert json.loads(metadata[b"cxr_fast_loader"]) == "torch"
    assert "out of memory" in json.loads(metadata[b"cxr_fast_loader_fallback"])
    assert "cxr-fast: DALI pipeline failed" in capsys.readouterr().err


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_a_bad_jpeg_under_dali_stays_a_per_file_error(trained_run, bad_jpeg_archive, tmp_path):
    out = tmp_path / "p.parquet"
    summary = run_score(
        ScoreConfig(
            archive=bad_jpeg_archive,
            model=trained_run,
            out=out,
            device="cpu",
            workers=0,
            loader="dali",
            batch_size=4,
        )
    )
    assert summary.loader == "dali" and summary.loader_fallback is None
    assert summary.errors == 1 and summary.ok == summary.rows - 1


@pytest.fixture
def bad_jpeg_archive(kaggle_dir, samples_dir, tmp_path) -> Path:
    root = tmp_path / "a"
    shutil.copytree(kaggle_dir / "train" / "NORMAL", root)
    data = (samples_dir / "16747_3_1.jpg").read_bytes()
    (root / "truncated.jpeg").write_bytes(data[: len(data) // 2])
    return root
