"""bench.adapt: the table of the stored threshold, adapt and calibrate, on a tiny real run."""

import json

import numpy as np
import pytest

from bench.adapt import held_out_sites, main, wilson


def test_wilson_interval_matches_the_textbook_values():
    assert wilson(0, 0) is None
    lo, hi = wilson(81, 263)  # Agresti & Coull's example, p = 0.308
    assert lo == pytest.approx(0.2553, abs=1e-3) and hi == pytest.approx(0.3662, abs=1e-3)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] < 1


def test_held_out_sites_never_share_a_patient_with_their_reference():
    oof = {
        "path": [f"/x/person{i // 2}_virus_{i}.jpeg" for i in range(40)],
        "patient": [f"person{i // 2}" for i in range(40)],
        "label": np.array([i % 2 for i in range(40)]),
        "fold": np.array([1 + (i // 2) % 3 for i in range(40)]),
    }
    ensemble = held_out_sites(oof, members=3)
    assert [k for k, _ in ensemble] == [0, 1, 2]
    assert all((oof["fold"][rows] == k + 1).all() for k, rows in ensemble)
    halves = held_out_sites(oof, members=1)
    assert sorted(np.concatenate([rows for _, rows in halves])) == list(range(40))
    first = {oof["patient"][i] for i in halves[0][1]}
    assert first and not first & {oof["patient"][i] for i in halves[1][1]}


def test_the_bench_reports_each_row_with_n_and_intervals(tiny_ensemble, synth_small, tmp_path):
    out = tmp_path / "rows.json"
    main([str(tiny_ensemble), "--sample", str(synth_small), "--work", str(tmp_path / "w"),
          "--methods", "shift", "--workers", "0", "--json", str(out)])  # fmt: skip
    rows = {row["name"].split(" (")[0]: row for row in json.loads(out.read_text())}
    assert {"as trained, stored threshold", "adapt --method shift"} <= set(rows)
    for row in rows.values():
        assert row["n"] == 160 and len(row["accuracy_ci95"]) == 2
        assert row["sensitivity_ci95"][0] <= row["sensitivity"] <= row["sensitivity_ci95"][1]
    crossed = rows["calibrate, cross-fitted"]
    assert crossed["roc_auc"] is None and crossed["threshold"] is None


def test_a_member_becomes_a_one_model_run_with_its_own_fold_as_out_of_fold(tiny_ensemble, tmp_path):
    import pyarrow.parquet as pq

    from bench.member_run import member_run
    from cxr_fast.run_folder import read_run

    threshold = member_run(tiny_ensemble, 1, tmp_path / "m1", workers=0)
    _, info = read_run(tmp_path / "m1")
    assert info.members == 1 and info.threshold == threshold
    oof = pq.read_table(tmp_path / "m1" / "oof.parquet").to_pydict()
    whole = pq.read_table(tiny_ensemble / "oof.parquet").to_pydict()
    fold1 = {p for p, f in zip(whole["path"], whole["fold"], strict=True) if f == 1}
    assert set(oof["path"]) == fold1  # the member's validation fold, no other film
