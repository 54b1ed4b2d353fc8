import pytest

from cxr_fast.data.discover import Record
from cxr_fast.training.train_data import fingerprint, pos_weight_value, select_train_val


def _records(split: str, n_normal: int, n_pneumonia: int) -> list[Record]:
    out = []
    for label, n, prefix in ((0, n_normal, "IM-"), (1, n_pneumonia, "person")):
        for i in range(n):
            out.append(
                Record(
                    f"/d/{split}/{label}/{prefix}{i}_{split}.jpeg",
                    label,
                    split,
                    f"{prefix}{i}{split}",
                )
            )
    return out


def test_small_val_folder_is_ignored_and_test_never_used():
    records = _records("train", 30, 90) + _records("val", 8, 8) + _records("test", 20, 20)
    data = select_train_val(records, 0.2, seed=0)
    assert data.val_source == "patient split of train"
    assert {r.split for r in data.train + data.val} == {"train"}
    assert len(data.train) + len(data.val) == 120


def test_large_val_folder_is_used():
    records = _records("train", 30, 90) + _records("val", 50, 60)
    data = select_train_val(records, 0.2, seed=0)
    assert data.val_source == "val folder"
    assert len(data.train) == 120 and len(data.val) == 110


def test_folder_without_splits_and_missing_classes():
    flat = [Record(r.path, r.label, None, r.patient) for r in _records("x", 10, 10)]
    assert len(select_train_val(flat, 0.2, seed=0).train) == 16
    with pytest.raises(ValueError, match="no NORMAL"):
        select_train_val(_records("train", 0, 10), 0.2, seed=0)
    with pytest.raises(ValueError, match="no labelled"):
        select_train_val([Record("/a.jpeg", None, None, "a")], 0.2, seed=0)


def test_fingerprint_and_pos_weight():
    data = select_train_val(_records("train", 30, 90), 0.2, seed=0)
    first = fingerprint("/d", data)
    assert first == fingerprint("/d", data)
    assert first["counts"]["train"]["NORMAL"] + first["counts"]["val"]["NORMAL"] == 30
    assert set(first["patients"]["train"]).isdisjoint(first["patients"]["val"])
    assert pos_weight_value("auto", data.train) == pytest.approx(24 / 72)
    assert pos_weight_value("none", data.train) is None
    assert pos_weight_value("2.5", data.train) == 2.5
