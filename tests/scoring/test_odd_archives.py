"""Archives as users have them (issue 26): names that are not UTF-8, folders that cannot be
read, DICOM files without an extension, and the run's own outputs inside the archive. Every
file is still a row, and a rerun scores the same files."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.dali_dicom import route
from cxr_fast.data.dali_pipeline import dali_available
from cxr_fast.data.discover import discover
from cxr_fast.errors import Interrupted
from cxr_fast.scoring.own_outputs import own_outputs
from cxr_fast.scoring.parquet_out import ChunkedParquetWriter, real_paths
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.bad_files import scandir_refusing
from tests.cli_in_process import run_main

ODD = b"bad\xff.jpeg"  # a Latin-1 name copied from an old PACS share: not UTF-8


def _films(kaggle_dir: Path, count: int) -> list[Path]:
    return sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:count]


def _config(trained_run, archive: Path, out: Path, **options) -> ScoreConfig:
    return ScoreConfig(
        archive=archive, model=trained_run, out=out, device="cpu", workers=0, **options
    )


@pytest.fixture
def odd_archive(kaggle_dir, tmp_path) -> tuple[Path, str]:
    """Three films, the first also under a name that is not UTF-8; (root, that path)."""
    root = tmp_path / "archive"
    root.mkdir()
    films = _films(kaggle_dir, 3)
    for film in films:
        shutil.copy(film, root / film.name)
    odd = os.fsdecode(os.path.join(os.fsencode(root), ODD))
    shutil.copy(films[0], odd)
    return root, odd


def test_a_name_that_is_not_utf8_is_a_row_with_its_bytes(trained_run, odd_archive, tmp_path):
    root, odd = odd_archive
    out = tmp_path / "p.parquet"
    summary = run_score(_config(trained_run, root, out))
    rows = pq.read_table(out).to_pylist()
    assert summary.rows == len(rows) == 4 and summary.ok == 4
    by_path = {row["path"]: row for row in rows}
    row = by_path[f"{root.resolve()}/bad\\xff.jpeg"]  # valid UTF-8 text
    assert row["path_bytes"] == os.fsencode(Path(odd).resolve())
    assert all(r["path_bytes"] is None for r in rows if r is not row)
    twin = by_path[str((root / _films_name(root)).resolve())]
    assert row["prob_pneumonia"] == twin["prob_pneumonia"]  # the image is fine, only the name
    table = pq.read_table(out)
    assert set(real_paths(table)) == {r.path for r in discover(root.resolve())}


def _films_name(root: Path) -> str:
    """The film the odd name is a copy of: the first by name that is UTF-8."""
    return sorted(p.name for p in root.iterdir() if p.name.isascii())[0]


def test_resume_recognises_the_rows_of_such_names(trained_run, odd_archive, tmp_path):
    root, _ = odd_archive
    out = tmp_path / "p.parquet"
    config = _config(trained_run, root, out, batch_size=2, loader="torch")
    batches = []

    def stop_after_two(files: int) -> None:
        batches.append(files)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_score(config, progress=stop_after_two)  # the odd name is in the rows kept
    summary = run_score(replace(config, resume=True))
    assert summary.resumed == 4 and summary.scored == 0
    paths = real_paths(pq.read_table(out))
    assert sorted(paths) == sorted(r.path for r in discover(root.resolve()))


def test_the_writer_reads_back_real_paths(tmp_path):
    odd = os.fsdecode(b"/x/" + ODD)
    writer = ChunkedParquetWriter(tmp_path / "p.parquet", {})
    writer.add({"path": odd, "threshold": 0.5, "status": "ok", "prob_pneumonia": 0.9})
    writer.add({"path": "/x/a.jpeg", "threshold": 0.5, "status": "error", "error": f"{odd}: no"})
    writer.flush()
    again = ChunkedParquetWriter(tmp_path / "p.parquet", {})
    assert again.done_paths() == {odd, "/x/a.jpeg"}
    assert again.top_k(1) == [(odd, pytest.approx(0.9))]
    assert again.finish({odd: "/cams/bad_xff.cam.png"}) == 2
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert rows[0]["cam_path"] == "/cams/bad_xff.cam.png"
    assert rows[1]["error"] == "/x/bad\\xff.jpeg: no"  # any text column, valid UTF-8


def test_explain_and_cam_dir_write_overlays_with_safe_names(trained_run, odd_archive, tmp_path):
    from cxr_fast.explain.explain_stage import ExplainConfig, run_explain

    root, odd = odd_archive
    result = run_explain(ExplainConfig(trained_run, (Path(odd),), out=tmp_path / "cam"))
    (outcome,) = result.outcomes
    assert outcome.out.name.startswith("bad_xff.") and outcome.out.is_file()
    assert "bad\\xff.jpeg" in result.lines()[0][0]
    cams = tmp_path / "cams"
    run_score(_config(trained_run, root, tmp_path / "p.parquet", cam_dir=cams, cam_top=4))
    assert len(list(cams.iterdir())) == 4
    assert all(name.encode("utf-8") for name in os.listdir(cams))


@pytest.fixture
def locked_archive(kaggle_dir, tmp_path) -> Path:
    """Two films at the top, one in ``locked/`` (the folder the tests refuse to list)."""
    root = tmp_path / "archive"
    (root / "locked").mkdir(parents=True)
    films = _films(kaggle_dir, 3)
    for film in films[:2]:
        shutil.copy(film, root / film.name)
    shutil.copy(films[2], root / "locked" / films[2].name)
    return root.resolve()


def test_an_unreadable_folder_is_an_error_row_and_the_rest_is_scored(
    trained_run, locked_archive, tmp_path, monkeypatch
):
    scandir_refusing(monkeypatch, locked_archive / "locked")
    out = tmp_path / "p.parquet"
    summary = run_score(_config(trained_run, locked_archive, out))
    rows = {row["path"]: row for row in pq.read_table(out).to_pylist()}
    assert summary.rows == 3 and summary.ok == 2 and summary.errors == 1
    folder = rows[str(locked_archive / "locked")]
    assert folder["status"] == "error" and folder["prob_pneumonia"] is None
    assert folder["error"] == "permission denied: folder not read"


def test_a_resume_keeps_the_folders_row_once(trained_run, locked_archive, tmp_path, monkeypatch):
    scandir_refusing(monkeypatch, locked_archive / "locked")
    out = tmp_path / "p.parquet"
    config = _config(trained_run, locked_archive, out, batch_size=1, loader="torch")

    def stop(files: int) -> None:
        raise KeyboardInterrupt  # after the first film: its row and the folder's are kept

    with pytest.raises(Interrupted):
        run_score(config, progress=stop)
    summary = run_score(replace(config, resume=True))
    assert summary.resumed == 2 and summary.scored == 1 and summary.rows == 3
    paths = pq.read_table(out)["path"].to_pylist()
    assert sorted(paths) == sorted({*paths}) and str(locked_archive / "locked") in paths


def test_an_unreadable_folder_row_comes_from_the_first_shard_only(
    trained_run, locked_archive, tmp_path, monkeypatch
):
    scandir_refusing(monkeypatch, locked_archive / "locked")
    config = _config(trained_run, locked_archive, tmp_path / "parts")
    rows = [run_score(replace(config, shard=(i, 2))).rows for i in range(2)]
    assert sum(rows) == 3 and rows[0] == 2  # one film and the folder; the other film


def test_a_mode_000_folder_as_root_or_not(trained_run, locked_archive, tmp_path):
    """The real thing, whoever runs the tests: never a crash, every file or folder a row."""
    (locked_archive / "locked").chmod(0)
    try:
        summary = run_score(_config(trained_run, locked_archive, tmp_path / "p.parquet"))
    finally:
        (locked_archive / "locked").chmod(0o755)
    assert summary.rows == 3
    assert summary.errors == (0 if os.geteuid() == 0 else 1)


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_dicoms_without_extension_are_scored_and_other_files_counted(
    trained_run, kaggle_dir, samples_dir, tmp_path, monkeypatch, capsys, loader
):
    if loader == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    root = tmp_path / "pacs"
    (root / "S0001").mkdir(parents=True)
    dicom = samples_dir / "siim_sample.dcm"
    shutil.copy(dicom, root / "S0001" / "IM00001")
    shutil.copy(dicom, root / "S0001" / "x.dicom")
    shutil.copy(dicom, root / "S0001" / "named.dcm")
    shutil.copy(dicom, root / "DICOMDIR")  # the media's index: left out
    (root / "README.TXT").write_text("exported by a PACS\n")
    shutil.copy(_films(kaggle_dir, 1)[0], root / "film.jpeg")
    # The DALI path takes a DICOM by its content too, not only a .dcm.
    assert list(route({0: str(root / "S0001" / "IM00001")}, "cpu")[0]) == [0]
    out = tmp_path / "p.parquet"
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "score", root, "--model", trained_run, "--out", out,
        "--device", "cpu", "--workers", "0", "--loader", loader,
    )  # fmt: skip
    assert code == 0, stderr
    rows = {Path(row["path"]).name: row for row in pq.read_table(out).to_pylist()}
    assert set(rows) == {"IM00001", "x.dicom", "named.dcm", "film.jpeg"}
    assert all(row["status"] == "ok" for row in rows.values())
    for name in ("IM00001", "x.dicom"):  # scored as the .dcm is
        assert rows[name]["prob_pneumonia"] == rows["named.dcm"]["prob_pneumonia"]
        assert rows[name]["sop_instance_uid"] == rows["named.dcm"]["sop_instance_uid"]
        assert (rows[name]["width"], rows[name]["height"]) == (1024, 1024)
    assert "2 files left out: not images by name or content" in stdout


def test_the_runs_own_outputs_under_the_archive_are_not_scored(
    trained_run, kaggle_dir, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "archive"
    root.mkdir()
    for film in _films(kaggle_dir, 3):
        shutil.copy(film, root / film.name)
    command = ["score", root, "--model", trained_run, "--out", root / "p.parquet"]
    command += ["--cam-dir", root / "cams", "--cam-top", "2", "--device", "cpu"]
    code, _, stderr = run_main(monkeypatch, capsys, *command, "--workers", "0")
    assert code == 0, stderr
    assert len(list((root / "cams").iterdir())) == 2
    code, stdout, stderr = run_main(monkeypatch, capsys, *command, "--overwrite")
    assert code == 0, stderr
    assert pq.read_table(root / "p.parquet").num_rows == 3  # not the overlays
    assert "not scored: this run's own outputs under the archive" in stdout
    assert f"{root.resolve()}/cams" in stdout and "0 errors" in stdout


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the head start needs two cores")
def test_the_head_start_leaves_out_the_same_outputs(kaggle_dir, tmp_path):
    root = tmp_path / "archive"
    (root / "cams").mkdir(parents=True)
    for film in _films(kaggle_dir, 3):
        shutil.copy(film, root / film.name)
        shutil.copy(film, root / "cams" / film.name)
    outputs = [str(p) for p in own_outputs(root / "p.parquet", root / "cams")]
    # A fresh interpreter: the head start only runs before torch is imported.
    code = (
        "import json, sys; from pathlib import Path; from cxr_fast.scoring import head_start; "
        "from cxr_fast.contract import PreprocessContract; "
        "head_start.contract_hint = lambda model: PreprocessContract(image_size=64); "
        f"head = head_start.begin(Path({str(root)!r}), Path('run'), device='cpu', workers=2, "
        f"resume=False, shard=None, env={{}}, outputs=[Path(p) for p in {outputs!r}]); "
        "head.close(); "
        "print(json.dumps([len(head.records), head.discovery.excluded]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [3, [str((root / "cams").resolve())]]
