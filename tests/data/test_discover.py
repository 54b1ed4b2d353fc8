import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cxr_fast.data.discover import discover, patient_id, scan


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
