"""Issue 26: every output location is checked before the work that fills it, one line, exit 2
(a read-only --cam-dir failed after the whole archive was scored; explain, evaluate and export
--out gave tracebacks)."""

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cxr_fast.scoring.parquet_out import staging_dir
from tests.cli_in_process import assert_one_line, run_main

AS_ROOT = os.geteuid() == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxr_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _commands(run: Path, kaggle: Path, image: Path, out: Path, tmp: Path) -> dict[str, list]:
    cpu = ["--device", "cpu"]
    return {
        "score --cam-dir": [
            *("score", kaggle, "--model", run, "--out", tmp / "p.parquet", "--cam-dir", out),
            *cpu,
        ],
        "explain --out": ["explain", run, image, "--out", out, *cpu],
        "evaluate --out": ["evaluate", run, "--data", kaggle, "--out", out, *cpu],
        "export --out": ["export", run, "--format", "torchscript", "--out", out / "m.ts", *cpu],
    }


@pytest.mark.parametrize(
    "command", ["score --cam-dir", "explain --out", "evaluate --out", "export --out"]
)
def test_an_output_under_proc_is_one_line_before_any_work(
    trained_run, kaggle_dir, tmp_path, command
):
    # /proc refuses root too: a real unwritable location, not a simulated one.
    image = next((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))
    where = Path("/proc/cxr-fast-out")
    args = _commands(trained_run, kaggle_dir, image, where, tmp_path)[command]
    result = _cli(*args)
    assert_one_line(result.returncode, result.stderr, str(where), command.split()[1])
    assert (
        not (tmp_path / "p.parquet").exists() and not staging_dir(tmp_path / "p.parquet").exists()
    )


def test_a_cam_dir_under_a_file_is_refused_before_scoring(trained_run, kaggle_dir, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "p.parquet"
    args = ["score", kaggle_dir, "--model", trained_run, "--out", out, "--device", "cpu"]
    result = _cli(*args, "--cam-dir", tmp_path / "afile" / "cams")
    assert_one_line(result.returncode, result.stderr, "--cam-dir", "afile is a file")
    assert not out.exists() and not staging_dir(out).exists()


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder no file can be created in, as a read-only mount behaves even for root (who may
    write in a chmod 0o500 folder): creating a file there fails with EROFS."""
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


@pytest.mark.parametrize(
    "command", ["score --cam-dir", "explain --out", "evaluate --out", "export --out"]
)
def test_a_read_only_output_folder_is_one_line_before_any_work(
    trained_run, kaggle_dir, tmp_path, read_only, monkeypatch, capsys, command
):
    image = next((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))
    args = _commands(trained_run, kaggle_dir, image, read_only, tmp_path)[command]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_line(code, err, str(read_only), "Read-only file system")
    assert (
        not (tmp_path / "p.parquet").exists() and not staging_dir(tmp_path / "p.parquet").exists()
    )
    assert list(read_only.iterdir()) == []


@pytest.mark.skipif(AS_ROOT, reason="root writes in a chmod 0o500 folder")
def test_an_unwritable_cam_dir_as_a_user(trained_run, kaggle_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = tmp_path / "p.parquet"
    args = ["score", kaggle_dir, "--model", trained_run, "--out", out, "--device", "cpu"]
    result = _cli(*args, "--cam-dir", locked)
    assert_one_line(result.returncode, result.stderr, "--cam-dir", "Permission denied")
    assert not out.exists()
