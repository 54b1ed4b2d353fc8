import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cxr_fast.data.discover import (
    discover,
    display_path,
    is_dicom_file,
    path_bytes,
    paths_sha256,
    patient_id,
    real_path,
    scan,
)
from cxr_fast.errors import UserInputError
from tests.bad_files import scandir_refusing


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person12_virus_40.jpeg", "person12"),
        ("person1527_bacteria_3988.jpeg", "person1527"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0429-0001-0002.jpeg", "IM-0429"),
        ("NORMAL2-IM-0373-0001.jpeg", "NORMAL2-IM-0373"),
        ("00000001_000.png", "00000001"),
        ("scan.dcm", "scan"),
    ],
)
def test_patient_id_from_file_name(name, patient):
    assert patient_id(name) == patient


def _tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def test_kaggle_layout_at_every_level(tmp_path):
    root = _tree(
        tmp_path / "chest_xray",
        [
            "train/NORMAL/IM-0001-0001.jpeg",
            "train/PNEUMONIA/person1_virus_1.jpeg",
            "val/NORMAL/IM-0002-0001.jpeg",
            "test/PNEUMONIA/person2_bacteria_3.jpeg",
        ],
    )
    everything = discover(root)
    assert [(r.split, r.label, r.patient) for r in everything] == [
        ("test", 1, "person2"),
        ("train", 0, "IM-0001"),
        ("train", 1, "person1"),
        ("val", 0, "IM-0002"),
    ]
    assert [(r.split, r.label) for r in discover(root / "train")] == [("train", 0), ("train", 1)]
    assert [(r.split, r.label) for r in discover(root / "val" / "NORMAL")] == [("val", 0)]
    single = root / "train" / "PNEUMONIA" / "person1_virus_1.jpeg"
    assert [(r.split, r.label) for r in discover(single)] == [("train", 1)]


def test_nested_download_odd_case_hidden_and_macosx(tmp_path):
    root = _tree(
        tmp_path,
        [
            "chest_xray/chest_xray/Train/normal/IM-0001-0001.JPEG",
            "chest_xray/chest_xray/Train/Pneumonia/person1_virus_1.jpg",
            "chest_xray/__MACOSX/train/NORMAL/._IM-0001-0001.jpeg",
            "chest_xray/chest_xray/train/NORMAL/.DS_Store",
            "chest_xray/chest_xray/train/NORMAL/._IM-0009-0001.jpeg",
            "chest_xray/.hidden/NORMAL/IM-0003-0001.jpeg",
            "chest_xray/notes.txt",
        ],
    )
    found = scan(root)
    assert [(Path(r.path).name, r.split, r.label) for r in found.records] == [
        ("person1_virus_1.jpg", "train", 1),  # sorted by path: "Pneumonia" < "normal"
        ("IM-0001-0001.JPEG", "train", 0),
    ]
    assert found.skipped == 1  # notes.txt: counted, not silently ignored


def test_unlabeled_archive_keeps_every_format_and_broken_links(tmp_path):
    root = _tree(tmp_path, ["2021/a.png", "2021/b.dcm", "2022/ward/c.jpeg", "2022/readme.md"])
    os.symlink(tmp_path / "missing.jpeg", tmp_path / "2022" / "dangling.jpeg")
    records = discover(root)
    assert [Path(r.path).name for r in records] == ["a.png", "b.dcm", "dangling.jpeg", "c.jpeg"]
    assert all(r.label is None and r.split is None for r in records)


def test_real_images_and_missing_root(kaggle_dir, tmp_path):
    records = discover(kaggle_dir)
    assert Counter(r.label for r in records) == {0: 20, 1: 19}
    assert len({r.patient for r in records}) == 20
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "nope")


def test_walk_is_deterministic_whatever_the_creation_order(tmp_path, kaggle_dir):
    copy = tmp_path / "copy"
    shutil.copytree(kaggle_dir, copy)
    first = [Path(r.path).relative_to(copy) for r in discover(copy)]
    assert first == sorted(first)


def _odd(folder: Path, name: bytes) -> str:
    """The path of a file named ``name`` (bytes that need not be UTF-8) in ``folder``, as the
    OS hands it to Python (surrogates for the bytes that are not UTF-8)."""
    return os.fsdecode(os.path.join(os.fsencode(folder), name))


def test_a_name_that_is_not_utf8_is_kept_and_shown_as_text(tmp_path, kaggle_dir):
    source = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[0]
    odd = _odd(tmp_path, b"bad\xff.jpeg")
    shutil.copy(source, odd)
    shutil.copy(source, tmp_path / "good.jpeg")
    found = scan(tmp_path)
    assert [r.path for r in found.records] == [odd, str(tmp_path / "good.jpeg")]
    assert found.odd_names == 1
    shown = display_path(odd)
    shown.encode("utf-8")  # valid text
    assert shown == f"{tmp_path}/bad\\xff.jpeg"
    assert path_bytes(odd) == os.fsencode(odd) and path_bytes(str(tmp_path)) is None
    assert real_path(shown, path_bytes(odd)) == odd
    assert found.records[0].patient == "bad\\xff"  # ids are text too
    # The same hash as before for UTF-8 names; no crash for the others.
    good = [r for r in found.records if r.path.endswith("good.jpeg")]
    assert paths_sha256(tmp_path, good) == hashlib.sha256(b"good.jpeg").hexdigest()
    assert len(paths_sha256(tmp_path, found.records)) == 64


def test_dicom_without_an_extension_is_found_by_its_content(tmp_path, samples_dir):
    dicom = (samples_dir / "siim_sample.dcm").read_bytes()
    root = tmp_path / "export"
    (root / "S0001").mkdir(parents=True)
    (root / "S0001" / "IM00001").write_bytes(dicom)
    (root / "S0001" / "x.dicom").write_bytes(dicom)
    (root / "DICOMDIR").write_bytes(dicom)  # an index, never an image
    (root / "S0001" / "VERSION").write_bytes(b"x" * 200)  # no extension, not DICOM
    (root / "S0001" / "tiny").write_bytes(b"DICM")  # shorter than a preamble
    os.symlink(root / "missing", root / "S0001" / "dangling")
    os.mkfifo(root / "S0001" / "pipe")  # never opened: sniffing must not block
    found = scan(root)
    assert [Path(r.path).name for r in found.records] == ["IM00001", "x.dicom"]
    assert found.skipped == 5 and found.unreadable == []
    assert is_dicom_file(root / "S0001" / "IM00001") and is_dicom_file("any.DCM")
    assert not is_dicom_file(root / "S0001" / "VERSION") and not is_dicom_file(root / "x.png")
    assert not is_dicom_file(root / "S0001" / "pipe")


def test_an_unreadable_folder_is_recorded_and_the_rest_found(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path / "arch", ["a/1.jpeg", "locked/2.jpeg", "z/3.png"])
    scandir_refusing(monkeypatch, root / "locked")
    found = scan(root)
    assert [Path(r.path).name for r in found.records] == ["1.jpeg", "3.png"]
    assert found.unreadable == [(str(root / "locked"), "permission denied: folder not read")]
    assert len(discover(root)) == 2  # stages without error rows warn instead
    err = capsys.readouterr().err
    assert err.startswith("cxr-fast: warning: ")
    assert "locked: permission denied: folder not read" in err
    scandir_refusing(monkeypatch, root)
    with pytest.raises(UserInputError, match=r"cannot read .*permission denied"):
        scan(root)


def test_an_entry_whose_stat_fails_is_recorded(tmp_path, monkeypatch):
    root = _tree(tmp_path / "arch", ["1.jpeg", "2.jpeg"])
    real = os.scandir

    class Refusing:
        """A directory entry whose stat is refused (is_dir has to stat without d_type)."""

        def __init__(self, entry):
            self.name, self.path = entry.name, entry.path

        def is_dir(self, follow_symlinks=True):
            raise PermissionError(13, "Permission denied", self.path)

    class Listing:
        def __init__(self, path):
            self.entries = [Refusing(e) if e.name == "2.jpeg" else e for e in real(path)]

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Listing)
    found = scan(root)
    assert [Path(r.path).name for r in found.records] == ["1.jpeg"]
    assert found.unreadable == [(str(root / "2.jpeg"), "permission denied: file not read")]


def test_a_mode_000_folder_as_root_or_not(tmp_path):
    """The real thing: root reads the folder, anyone else gets it recorded; never a crash."""
    root = _tree(tmp_path / "arch", ["a/1.jpeg", "locked/2.jpeg"])
    (root / "locked").chmod(0)
    try:
        found = scan(root)
    finally:
        (root / "locked").chmod(0o755)
    if os.geteuid() == 0:
        assert len(found.records) == 2 and found.unreadable == []
    else:
        assert len(found.records) == 1 and found.unreadable[0][0] == str(root / "locked")


def test_excluded_outputs_are_left_out_and_named(tmp_path):
    root = _tree(tmp_path / "arch", ["a.jpeg", "cams/a.1234.cam.png", "p.parquet"])
    found = scan(root, exclude=[root / "cams", tmp_path / "arch" / "." / "p.parquet"])
    assert [Path(r.path).name for r in found.records] == ["a.jpeg"]
    assert found.excluded == [str(root / "cams"), str(root / "p.parquet")]
    assert found.skipped == 0
    assert len(scan(root).records) == 2  # without exclusions the overlays are images
