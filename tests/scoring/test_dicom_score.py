"""Scoring a hospital-like archive: DICOM rows join back to their files, non-images are skipped,
nothing but the summary reaches the terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pydicom

from cxr_fast.scoring.score import ScoreConfig, parse_views, run_score
from tests.data.test_dicom import DICOM, PYDICOM_FILES


def test_scored_archive_joins_back_to_its_files_by_sop_instance_uid(trained_run, tmp_path):
    archive = tmp_path / "pacs"
    shutil.copytree(DICOM, archive / "export")
    out = tmp_path / "preds.parquet"
    summary = run_score(
        ScoreConfig(
            archive=archive,
            model=trained_run,
            out=out,
            loader="torch",
            device="cpu",
            workers=0,
            skip_views=parse_views("lateral, LL"),
        )
    )
    rows = pq.read_table(out).to_pylist()
    by_uid = {row["sop_instance_uid"]: row for row in rows}
    assert len(by_uid) == len(rows) == 10
    for path in sorted((archive / "export").glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        row = by_uid[ds.SOPInstanceUID]  # the join a hospital does
        assert row["path"] == str(path)
        assert row["study_instance_uid"] == ds.StudyInstanceUID
        assert row["series_instance_uid"] == ds.SeriesInstanceUID
        assert row["patient_id"] == ds.PatientID and row["modality"] == ds.Modality
    status = {Path(row["path"]).name: row["status"] for row in rows}
    assert status.pop("sr_report.dcm") == "skipped"
    assert status.pop("dx_lateral_no_preamble.dcm") == "skipped"  # --skip-views LATERAL
    assert set(status.values()) == {"ok"}
    assert (summary.ok, summary.skipped, summary.errors) == (8, 2, 0)
    ok = [row for row in rows if row["status"] == "ok"]
    assert all(row["body_part_examined"] == "CHEST" and row["view_position"] for row in ok)
    # Every lossless copy of the film gets the uncompressed file's probability.
    probs = {Path(row["path"]).name: row["prob_pneumonia"] for row in ok}
    for name in ("cr_rle.dcm", "cr_jpeg_lossless_sv1.dcm", "cr_jpegls_lossless.dcm"):
        assert probs[name] == probs["cr_uncompressed.dcm"]


def test_pydicom_test_files_print_nothing_but_the_summary(trained_run, tmp_path):
    files = sorted(PYDICOM_FILES.glob("*.dcm"))
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in files:
        shutil.copy(path, archive / path.name)
    out = tmp_path / "preds.parquet"
    command = [sys.executable, "-m", "cxr_fast", "score", str(archive), "--out", str(out)]
    done = subprocess.run(
        [*command, "--model", str(trained_run), "--device", "cpu", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no pydicom/GDCM/OpenJPEG warnings between progress updates
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "skipped" in lines[0] and "images/s" in lines[1]
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(files)
    warned = [row for row in rows if row["warnings"]]
    assert any("padding" in row["warnings"] for row in warned)  # MR_small_padded.dcm
    counts = {s: sum(row["status"] == s for row in rows) for s in ("ok", "skipped", "error")}
    assert counts["ok"] >= 45 and counts["skipped"] >= 20 and counts["error"] <= 10
