from collections import Counter

import pytest

from cxr_fast.data.discover import Record, discover
from cxr_fast.data.split import patient_split


def _synthetic(n_normal: int, n_pneumonia: int, per_patient: int = 3) -> list[Record]:
    records = []
    for label, count, prefix in ((0, n_normal, "IM-"), (1, n_pneumonia, "person")):
        for p in range(count):
            for k in range(per_patient):
                patient = f"{prefix}{p:04d}"
                records.append(Record(f"/x/{patient}_{k}.jpeg", label, "train", patient))
    return records


def test_no_patient_on_both_sides_real_images(kaggle_dir):
    records = discover(kaggle_dir)
    train, val = patient_split(records, val_fraction=0.3, seed=1)
    assert {r.patient for r in train}.isdisjoint({r.patient for r in val})
    assert sorted(train + val, key=lambda r: r.path) == records
    assert {r.label for r in val} == {0, 1}


def test_deterministic_and_order_independent():
    records = _synthetic(40, 120)
    first = patient_split(records, 0.2, seed=7)
    assert patient_split(list(reversed(records)), 0.2, seed=7) == first
    assert patient_split(records, 0.2, seed=8) != first


def test_stratified_by_class():
    train, val = patient_split(_synthetic(40, 120), 0.25, seed=0)
    val_patients = Counter(label for label, _ in {(r.label, r.patient) for r in val})
    assert val_patients == {0: 10, 1: 30}
    assert len(train) + len(val) == 480


def test_small_classes_keep_one_patient_each_side():
    train, val = patient_split(_synthetic(2, 2), 0.05, seed=0)
    assert Counter(r.label for r in val) == {0: 3, 1: 3}
    assert Counter(r.label for r in train) == {0: 3, 1: 3}


def test_zero_fraction_and_bad_fraction():
    records = _synthetic(3, 3)
    assert patient_split(records, 0.0) == (sorted(records, key=lambda r: r.path), [])
    with pytest.raises(ValueError):
        patient_split(records, 1.0)
