"""Issue 31: progress with a total and an ETA, and plain lines in logs where tqdm is silent."""

import shutil
import time

from cxr_fast import progress as progress_module
from cxr_fast.progress import Progress, Working
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.cli_in_process import run_main


def test_line_counts_of_the_total_once_known():
    with Progress("score") as bar:
        bar.update(3)
        assert bar.line().startswith("score: 3 images, ")
        bar.set_total(5)
        assert bar.bar.total == 5  # the terminal bar shows a total and an ETA
        assert bar.line().startswith("score: 3 of 5 images, ") and " s left" in bar.line()


def test_a_log_gets_a_plain_line_every_interval(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.05)
    with Progress("score", total=1200) as bar:  # stderr under capsys is not a terminal
        bar.update(600)
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2, lines
    assert lines[0].startswith("score: 600 of 1,200 images, ") and "images/s" in lines[0]


def test_score_gives_its_progress_the_file_count(trained_run, kaggle_dir, tmp_path):
    archive = tmp_path / "archive"
    films = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]
    archive.mkdir()
    for film in films:
        shutil.copy(film, archive / film.name)
    totals, done = [], []
    config = ScoreConfig(
        archive=archive, model=trained_run, out=tmp_path / "p.parquet", device="cpu", workers=0
    )
    run_score(config, progress=done.append, set_total=totals.append)
    assert totals == [3] and sum(done) == 3


def test_score_cli_prints_progress_lines_in_a_log(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.01)
    archive = tmp_path / "archive"
    archive.mkdir()
    for film in sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]:
        shutil.copy(film, archive / film.name)
    code, _, err = run_main(
        monkeypatch, capsys, "score", archive, "--model", trained_run,
        "--out", tmp_path / "p.parquet", "--device", "cpu", "--workers", "0",
    )  # fmt: skip
    assert code == 0, err
    assert "score: " in err and " of 3 images, " in err, err


def test_uncounted_work_says_it_is_working_in_a_log(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.05)
    with Working("export", "runs/a (onnx)"):
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[0].startswith("export: working on runs/a (onnx), "), lines


def test_nothing_is_printed_at_once_so_a_mistake_stays_one_line(capsys):
    with Working("report", "runs/a"):
        pass
    assert capsys.readouterr().err == ""
