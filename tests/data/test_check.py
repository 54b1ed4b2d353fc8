import shutil

from cxr_fast.data.check import check_dataset, format_report


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
