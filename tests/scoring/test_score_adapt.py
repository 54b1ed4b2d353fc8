"""``score --adapt``: the rows of ``adapt`` then ``score`` done by hand, in one command that
says it took two passes; labels never read; the refusals, each one line before any scoring."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from cxr_fast.data.discover import discover
from tests.cli_in_process import assert_one_line, run_main


@pytest.fixture(scope="module")
def flat_copy(synth_small, tmp_path_factory):
    """``synth_small``'s films flat under new names: no class folder to read a label from."""
    flat = tmp_path_factory.mktemp("flat") / "films"
    flat.mkdir()
    for i, record in enumerate(reversed(discover(synth_small))):
        shutil.copyfile(record.path, flat / f"film{i:04d}.jpeg")
    return flat


def _table(path):
    return pq.read_table(path).sort_by("path")


def test_rows_are_those_of_adapt_then_score_by_hand_and_labels_are_not_read(
    tiny_ensemble, synth_small, flat_copy, tmp_path, monkeypatch, capsys
):
    # By hand, on the films without their labels: adapt, then score the labelled archive.
    hand = tmp_path / "hand"
    code, _, err = run_main(
        monkeypatch, capsys, "adapt", tiny_ensemble, "--data", flat_copy, "--out", hand,
        "--workers", "0",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(
        monkeypatch, capsys, "score", synth_small, "--model", hand, "--out", tmp_path / "hand.pq",
        "--workers", "0",
    )  # fmt: skip
    assert code == 0, err
    out = tmp_path / "adapted.parquet"
    code, stdout, err = run_main(
        monkeypatch, capsys, "score", synth_small, "--model", tiny_ensemble, "--adapt",
        "--out", out, "--workers", "0",
    )  # fmt: skip
    assert code == 0, stdout + err
    by_hand, adapted = _table(tmp_path / "hand.pq"), _table(out)
    assert adapted.num_rows == by_hand.num_rows == 160
    for column in ("path", "prob_pneumonia", "threshold", "pred", "label"):
        assert adapted[column].to_pylist() == by_hand[column].to_pylist(), column
    meta = pq.read_schema(out).metadata
    threshold = json.loads(pq.read_schema(tmp_path / "hand.pq").metadata[b"cxr_fast_threshold"])
    assert json.loads(meta[b"cxr_fast_threshold"]) == threshold
    run2 = out.with_name(out.name + ".adapted")
    assert json.loads(meta[b"cxr_fast_adapted_run"]) == str(run2.resolve())
    source = json.loads(meta[b"cxr_fast_threshold_source"])["adaptation"]
    assert source["labels_read"] is False and source["films"]["n"] == 160
    two_pass = [line for line in stdout.splitlines() if line.startswith("two passes: ")]
    assert len(two_pass) == 1 and f"-> {run2}" in two_pass[0] and "labels not read" in stdout
    assert f"-> {threshold:.4f} (site adaptation)" in stdout

    # --resume reuses the adapted run for the same films; other files, another run: one line.
    out.unlink()
    code, stdout, err = run_main(
        monkeypatch, capsys, "score", synth_small, "--model", tiny_ensemble, "--adapt",
        "--out", out, "--workers", "0", "--resume",
    )  # fmt: skip
    assert code == 0, stdout + err
    assert f"reused {run2}" in stdout
    assert _table(out)["prob_pneumonia"] == by_hand["prob_pneumonia"]
    code, _, err = run_main(
        monkeypatch, capsys, "score", flat_copy, "--model", tiny_ensemble, "--adapt",
        "--out", out, "--resume",
    )  # fmt: skip
    assert_one_line(code, err, "nothing to resume")
    out.unlink()
    code, _, err = run_main(
        monkeypatch, capsys, "score", flat_copy, "--model", tiny_ensemble, "--adapt",
        "--out", out, "--resume",
    )  # fmt: skip
    assert_one_line(code, err, "was not adapted from", "--overwrite")
    code, _, err = run_main(
        monkeypatch, capsys, "score", flat_copy, "--model", tiny_ensemble, "--adapt", "--out", out
    )
    assert_one_line(code, err, "already holds", "--resume")
    code, stdout, err = run_main(
        monkeypatch, capsys, "score", synth_small, "--model", tiny_ensemble, "--adapt",
        "--out", out, "--workers", "0", "--overwrite",
    )  # fmt: skip
    assert code == 0, stdout + err
    assert f"to the archive's 160 films (shift; labels not read) -> {run2}" in stdout
    assert _table(out)["threshold"] == by_hand["threshold"]
    # An adapted (or calibrated) run is refused as adapt refuses it.
    code, _, err = run_main(
        monkeypatch, capsys, "score", synth_small, "--model", run2, "--adapt",
        "--out", tmp_path / "again.parquet", "--workers", "0",
    )  # fmt: skip
    assert_one_line(code, err, "adapted already")
    assert not (tmp_path / "again.parquet").exists()
    assert not (tmp_path / "again.parquet.adapted").exists()


def test_fewer_than_100_films_are_refused_before_any_scoring(
    tiny_ensemble, kaggle_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "p.parquet"
    code, _, err = run_main(
        monkeypatch, capsys, "score", kaggle_dir, "--model", tiny_ensemble, "--adapt", "--out", out
    )
    assert_one_line(code, err, "39 images", "at least 100")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (("--shard", "0/2"), ("--adapt cannot be used with --shard or torchrun",)),
        (("--dicomweb", "http://pacs.invalid/dicom-web"), ("--adapt cannot be used with",)),
    ],
)
def test_adapt_refuses_slices_and_dicomweb_in_one_line(
    tiny_ensemble, kaggle_dir, tmp_path, monkeypatch, capsys, extra, needles
):
    archive = () if "--dicomweb" in extra else (kaggle_dir,)
    code, _, err = run_main(
        monkeypatch, capsys, "score", *archive, "--model", tiny_ensemble, "--adapt",
        "--out", tmp_path / "p", *extra,
    )  # fmt: skip
    assert_one_line(code, err, *needles)


def test_adapt_refuses_an_export_in_one_line(
    tiny_ensemble, kaggle_dir, tmp_path, monkeypatch, capsys
):
    code, _, err = run_main(
        monkeypatch, capsys, "score", kaggle_dir, "--model", tiny_ensemble / "model.pt", "--adapt",
        "--out", tmp_path / "p.parquet",
    )  # fmt: skip
    assert_one_line(code, err, "--adapt needs a run folder", "not an export")
