"""Scoring a hospital-like archive: DICOM rows join back to their files, non-images are skipped,
nothing but the summary reaches the terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pydicom

from cxr_fast.data.views import parse_views
from cxr_fast.scoring.score import ScoreConfig, run_score
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
    assert len(lines) == 3 and "skipped" in lines[0] and "images/s" in lines[1]
    assert lines[2].startswith("backend: eager")  # which model scored, and why
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(files)
    warned = [row for row in rows if row["warnings"]]
    assert any("padding" in row["warnings"] for row in warned)  # MR_small_padded.dcm
    statuses = ("ok", "skipped", "error", "not_cxr")
    counts = {s: sum(row["status"] == s for row in rows) for s in statuses}
    assert counts["ok"] + counts["not_cxr"] >= 45
    assert counts["skipped"] >= 20 and counts["error"] <= 10
    # pydicom's CT, MR, ultrasound and nuclear medicine images get no verdict (the input gate's
    # header check): only the projection radiographs and untagged images are scored.
    for row in rows:
        if row["modality"] in ("CT", "MR", "US", "NM") and row["status"] != "error":
            assert row["status"] == "not_cxr" and row["pred"] is None, row["path"]


def _windowed_copy(source: Path, out: Path) -> None:
    """The JPEG Baseline DX with a narrow 8-bit window (clips both ends) as a new instance."""
    ds = pydicom.dcmread(source)
    ds.WindowCenter, ds.WindowWidth = 120, 90
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.save_as(out)


def _truncated_copy(source: Path, out: Path) -> None:
    """A JPEG Baseline DICOM whose frame lost its second half (a broken transfer)."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(source)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".8"
    ds.save_as(out)


def test_jpeg_baseline_dicom_through_dali_equals_the_pydicom_path(
    trained_run, samples_dir, tmp_path
):
    from cxr_fast.data.dali_dicom import route

    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("dx_jpeg_baseline.dcm", "dx_jpeg_baseline_mono1.dcm", "cr_rle.dcm"):
        shutil.copy(DICOM / name, archive / name)
    for name in ("siim_sample.dcm", "Fake_MONOHR1.dcm"):  # real 1024 px films, MONOCHROME1 too
        shutil.copy(samples_dir / name, archive / name)
    _windowed_copy(DICOM / "dx_jpeg_baseline.dcm", archive / "windowed.dcm")
    _truncated_copy(DICOM / "dx_jpeg_baseline.dcm", archive / "truncated.dcm")
    paths = {i: str(p) for i, p in enumerate(sorted(archive.iterdir()))}
    plans, rest = route(paths, "cpu")
    dali_names = sorted(Path(paths[p]).name for p in plans)
    assert len(dali_names) == 6  # every JPEG Baseline one; RLE is not DALI's
    assert [Path(paths[p]).name for p in rest] == ["cr_rle.dcm"]
    rows = {}
    for loader in ("torch", "dali"):
        out = tmp_path / f"{loader}.parquet"
        run_score(
            ScoreConfig(
                archive=archive, model=trained_run, out=out, loader=loader, device="cpu",
                workers=0, batch_size=4,
            )
        )  # fmt: skip
        rows[loader] = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert rows["torch"].keys() == rows["dali"].keys()
    for name, pil_row in rows["torch"].items():
        dali_row = rows["dali"][name]
        assert dali_row["status"] == pil_row["status"], name
        assert dali_row["sop_instance_uid"] == pil_row["sop_instance_uid"]
        if pil_row["status"] == "ok":
            assert abs(dali_row["prob_pneumonia"] - pil_row["prob_pneumonia"]) < 0.01, name
            assert (dali_row["width"], dali_row["height"]) == (pil_row["width"], pil_row["height"])
    assert rows["dali"]["truncated.dcm"]["status"] == "error"  # back on pydicom's path
    assert sum(r["status"] == "ok" for r in rows["dali"].values()) == 6
