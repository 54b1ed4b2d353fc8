import json
import os
import shutil

from cxr_fast.data.check import check_dataset, format_report
from tests.cli_in_process import run_main


def test_real_images_report(kaggle_dir):
    report = check_dataset(kaggle_dir, workers=2)
    assert report.counts == {"train": {"NORMAL": 20, "PNEUMONIA": 19}}
    assert report.patients == {"train": 20}
    assert report.leaked_patients == {}
    assert report.unreadable == []
    assert report.width_range == (224, 224)
    text = format_report(report)
    assert "NORMAL" in text and "39" in text and "no patient appears" in text


def test_leakage_unreadable_and_sampling(kaggle_dir, tmp_path):
    root = tmp_path / "chest_xray"
    shutil.copytree(kaggle_dir / "train", root / "train")
    (root / "val" / "PNEUMONIA").mkdir(parents=True)
    shutil.copy(
        root / "train" / "PNEUMONIA" / "person1_bacteria_1.jpeg",
        root / "val" / "PNEUMONIA" / "person1_bacteria_99.jpeg",
    )
    (root / "val" / "PNEUMONIA" / "person2_virus_1.jpeg").write_bytes(b"\xff\xd8\xff")
    report = check_dataset(root, workers=1)
    assert report.counts["val"] == {"PNEUMONIA": 2}
    assert report.leaked_patients == {"train+val": ["person1"]}
    assert [bad["path"].rsplit("/", 1)[-1] for bad in report.unreadable] == ["person2_virus_1.jpeg"]
    assert "LEAKAGE: 1 patient in train+val: person1" in format_report(report)

    sampled = check_dataset(root, sample=10, workers=1)
    assert sampled.checked == 10 and sampled.images == 41


def test_unreadable_folders_odd_names_and_files_left_out(
    kaggle_dir, samples_dir, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "arch"
    (root / "locked").mkdir(parents=True)
    films = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]
    shutil.copy(films[0], root / films[0].name)
    shutil.copy(films[1], os.fsdecode(os.fsencode(root) + b"/bad\xff.jpeg"))
    shutil.copy(films[2], root / "locked" / films[2].name)
    shutil.copy(samples_dir / "siim_sample.dcm", root / "IM00001")
    (root / "notes.txt").write_text("not an image\n")
    real = os.scandir

    def scandir(path="."):  # a mode-000 folder for a user who is not root (root reads it)
        if not isinstance(path, int) and os.fspath(path) == str(root / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = check_dataset(root, workers=1)
    assert report.images == 3 and report.unreadable == []  # the odd name and IM00001 read
    assert report.not_read == [
        {"path": str(root / "locked"), "error": "permission denied: folder not read"}
    ]
    assert report.odd_names == 1 and report.skipped_files == 1 and report.has_problems
    text = format_report(report)
    assert f"not read: {root / 'locked'}: permission denied: folder not read" in text
    assert "names not UTF-8: 1 image" in text
    assert "left out: 1 file: not images by name or content" in text
    code, stdout, _ = run_main(monkeypatch, capsys, "data", "check", root, "--json")
    assert code == 1  # a folder could not be checked
    assert json.loads(stdout)["not_read"] == report.not_read


def test_dicom_report_is_skipped_not_unreadable(kaggle_dir, tmp_path, monkeypatch, capsys):
    """A DICOM structured report is a `skipped` row in score: data check says the same."""
    dicom = kaggle_dir.parent / "dicom"
    root = tmp_path / "archive"
    root.mkdir()
    shutil.copy(dicom / "sr_report.dcm", root / "sr_report.dcm")
    shutil.copy(dicom / "cr_uncompressed.dcm", root / "cr_uncompressed.dcm")
    report = check_dataset(root, workers=1)
    assert report.unreadable == [] and not report.has_problems
    assert [item["path"].rsplit("/", 1)[-1] for item in report.not_images] == ["sr_report.dcm"]
    assert "skipped: 1 DICOM object with no image to score" in format_report(report)
    code, stdout, _ = run_main(monkeypatch, capsys, "data", "check", root, "--json")
    assert code == 0
    assert len(json.loads(stdout)["not_images"]) == 1
