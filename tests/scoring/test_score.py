"""Batch scoring: one row per file whatever the file, equal to evaluate, resumable, shardable."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cxr_fast.data.discover import discover
from cxr_fast.evaluate import EvalConfig, run_evaluate
from cxr_fast.scoring.parquet_out import staging_dir
from cxr_fast.scoring.score import ScoreConfig, parse_shard, run_score
from tests.bad_files import write_bad_files


@pytest.fixture(scope="module")
def bad_archive(kaggle_dir, samples_dir, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Good films plus every bad kind; returns the root and the expected status per name."""
    root = tmp_path_factory.mktemp("archive") / "test"
    normal, pneumonia = root / "NORMAL", root / "PNEUMONIA"
    normal.mkdir(parents=True)
    pneumonia.mkdir()
    good = sorted((kaggle_dir / "train" / "NORMAL").glob("*.jpeg"))[:6]
    good += sorted((kaggle_dir / "train" / "PNEUMONIA").glob("*.jpeg"))[:6]
    for path in good:
        shutil.copy(path, root / path.parent.name / path.name)
    expected = {path.name: "ok" for path in good}
    # Bad files sit in a class folder, so their rows keep a label.
    expected.update(write_bad_files(normal, samples_dir))
    return root, expected


def _table(path: Path) -> dict[str, dict]:
    rows = pq.read_table(path).to_pylist()
    by_name = {Path(row["path"]).name: row for row in rows}
    assert len(by_name) == len(rows)
    return by_name


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_every_bad_kind_becomes_a_row_and_the_rest_are_scored(
    trained_run, bad_archive, tmp_path, loader
):
    root, expected = bad_archive
    out = tmp_path / "preds.parquet"
    summary = run_score(
        ScoreConfig(
            archive=root,
            model=trained_run,
            out=out,
            loader=loader,
            device="cpu",
            batch_size=5,
            workers=2,
        )
    )
    rows = _table(out)
    assert set(rows) == set(expected)  # rows out == files in
    assert {name: row["status"] for name, row in rows.items()} == expected
    assert summary.rows == len(expected) and summary.errors == list(expected.values()).count(
        "error"
    )
    for name, row in rows.items():
        if row["status"] == "ok":
            assert 0.0 <= row["prob_pneumonia"] <= 1.0 and row["error"] is None
            assert row["pred"] == (
                "PNEUMONIA" if row["prob_pneumonia"] >= row["threshold"] else "NORMAL"
            )
            assert row["width"] >= 32 and row["height"] >= 32
        else:
            assert row["prob_pneumonia"] is None and row["pred"] is None
            assert row["error"] and name not in row["error"]
    assert "empty" in rows["empty.jpeg"]["error"]
    assert "truncated" in rows["truncated.jpeg"]["error"]
    assert "decompression bomb" in rows["bomb.jpeg"]["error"]
    assert "1x1" in rows["one_pixel.png"]["error"]
    assert "not found" in rows["dangling.jpeg"]["error"]
    assert (rows["mono1.dcm"]["width"], rows["mono1.dcm"]["height"]) == (1024, 1024)
    assert rows["cmyk.jpeg"]["label"] == "NORMAL"
    assert not staging_dir(out).exists() and not out.with_name(out.name + ".tmp").exists()
    metadata = pq.read_schema(out).metadata
    assert b"cxr_fast_model_sha256" in metadata and b"cxr_fast_contract" in metadata


def test_cli_exit_codes_with_bad_files(trained_run, bad_archive, tmp_path):
    root, _ = bad_archive
    command = [
        sys.executable,
        "-m",
        "cxr_fast",
        "score",
        str(root),
        "--model",
        str(trained_run),
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    ok = subprocess.run(
        [*command, "--out", str(tmp_path / "a.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "errors" in ok.stdout and "images/s" in ok.stdout
    strict = subprocess.run(
        [*command, "--out", str(tmp_path / "b.parquet"), "--fail-on-error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert strict.returncode == 1
    again = subprocess.run(
        [*command, "--out", str(tmp_path / "a.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_score_probabilities_equal_evaluate(trained_run, synth_small, tmp_path):
    # fp32 in both: under bf16 autocast oneDNN's rounding depends on the thread count, which
    # score chooses by measurement and evaluate does not.
    evaluated = run_evaluate(
        EvalConfig(
            trained_run,
            synth_small,
            out=tmp_path / "eval",
            device="cpu",
            workers=0,
            bootstrap=0,
            precision="fp32",
        )
    )
    out = tmp_path / "preds.parquet"
    summary = run_score(
        ScoreConfig(
            archive=synth_small,
            model=trained_run,
            out=out,
            loader="torch",
            device="cpu",
            workers=2,
            batch_size=64,  # evaluate's: same batches, same bits
            precision="fp32",
        )
    )
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(evaluated.probabilities) == 160
    for row in rows:
        assert row["prob_pneumonia"] == pytest.approx(
            evaluated.probabilities[row["path"]], abs=1e-6
        )
    assert summary.metrics_path is not None
    metrics = __import__("json").loads(summary.metrics_path.read_text())
    assert metrics["roc_auc"] == pytest.approx(evaluated.metrics["roc_auc"], abs=1e-9)
    assert metrics["confusion_matrix"] == evaluated.metrics["confusion_matrix"]


def test_dali_and_pil_paths_agree(trained_run, synth_small, tmp_path):
    probs = {}
    for loader in ("torch", "dali"):
        out = tmp_path / f"{loader}.parquet"
        run_score(
            ScoreConfig(
                archive=synth_small,
                model=trained_run,
                out=out,
                loader=loader,
                device="cpu",
                workers=2,
            )
        )
        probs[loader] = {r["path"]: r["prob_pneumonia"] for r in pq.read_table(out).to_pylist()}
    difference = [abs(probs["torch"][p] - probs["dali"][p]) for p in probs["torch"]]
    assert max(difference) < 0.05


def test_shards_are_disjoint_and_cover_the_archive(trained_run, synth_small, tmp_path):
    out = tmp_path / "parts"
    for index in range(3):
        run_score(
            ScoreConfig(
                archive=synth_small,
                model=trained_run,
                out=out,
                shard=(index, 3),
                device="cpu",
                workers=0,
                loader="torch",
            )
        )
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    paths = ds.dataset(out, format="parquet").to_table(columns=["path"]).column("path")
    paths = paths.to_pylist()
    assert len(paths) == len(set(paths)) == 160
    assert set(paths) == {r.path for r in discover(synth_small)}


def test_shard_from_option_or_torchrun_environment():
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None, {"RANK": "2", "WORLD_SIZE": "3"}) == (2, 3)
    assert parse_shard(None, {}) is None
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    with pytest.raises(ValueError, match=r"--shard 2/2: I counts from 0, .* must be 0 to 1$"):
        parse_shard("2/2")


def test_sigkill_mid_run_then_resume(trained_run, synth_small, tmp_path):
    out = tmp_path / "killed.parquet"
    command = [
        sys.executable,
        "-m",
        "cxr_fast",
        "score",
        str(synth_small),
        "--model",
        str(trained_run),
        "--out",
        str(out),
        "--workers",
        "0",
        "--batch-size",
        "1",
        "--chunk-rows",
        "4",
        "--device",
        "cpu",
        "--loader",
        "torch",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = staging_dir(out)
    deadline = time.monotonic() + 120
    while not staging.is_dir() or len(list(staging.glob("chunk-*.parquet"))) < 3:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists()  # nothing half-written where readers look
    chunks = sorted(staging.glob("chunk-*.parquet"))
    kept = sum(pq.read_table(chunk).num_rows for chunk in chunks)  # every chunk reads whole
    assert 0 < kept < 160

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} kept from before" in resumed.stdout
    paths = pq.read_table(out, columns=["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 160
    assert set(paths) == {r.path for r in discover(synth_small)}
    assert not staging.exists()


def test_cam_dir_overlays_the_most_suspicious_and_adds_a_column(trained_run, synth_small, tmp_path):
    out = tmp_path / "preds.parquet"
    cams = tmp_path / "cams"
    config = ScoreConfig(
        archive=synth_small, model=trained_run, out=out, device="cpu", workers=0, cam_dir=cams
    )
    run_score(replace(config, cam_top=3))
    rows = pq.read_table(out).to_pylist()
    with_cam = [r for r in rows if r["cam_path"] is not None]
    top = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["prob_pneumonia"])[:3]
    assert {r["path"] for r in with_cam} == {r["path"] for r in top}
    assert all(
        Path(r["cam_path"]).is_file() and Path(r["cam_path"]).parent == cams for r in with_cam
    )
    assert sorted(p.name for p in cams.iterdir()) == sorted(
        Path(r["cam_path"]).name for r in with_cam
    )


def test_cam_dir_finds_the_run_of_an_export_or_says_what_to_pass(
    trained_run, synth_small, tmp_path
):
    from cxr_fast.export import export_run

    beside = export_run(trained_run, "torchscript", device="cpu").path  # RUN/export/model.ts
    elsewhere = export_run(trained_run, "torchscript", out=tmp_path / "m.ts", device="cpu").path
    common = dict(archive=synth_small, device="cpu", workers=0, cam_dir=tmp_path / "c", cam_top=1)
    run_score(ScoreConfig(model=beside, out=tmp_path / "a.parquet", **common))
    assert (
        pq.read_table(tmp_path / "a.parquet")["cam_path"].null_count
        == len(discover(synth_small)) - 1
    )
    with pytest.raises(ValueError, match="keep no gradients"):
        run_score(ScoreConfig(model=elsewhere, out=tmp_path / "b.parquet", **common))
    assert not (tmp_path / "b.parquet").exists()
    run_score(
        ScoreConfig(model=elsewhere, out=tmp_path / "b.parquet", cam_run=trained_run, **common)
    )


def test_scoring_does_not_load_the_explain_stage():
    """A score run without --cam-dir imports neither explain/ nor matplotlib."""
    from tests.loaded_modules import loaded_by

    assert loaded_by("cxr_fast.scoring.score", ("cxr_fast.explain", "matplotlib")) == []


def test_cam_layer_and_method_choose_the_map_as_explain_does(trained_run, synth_small, tmp_path):
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from cxr_fast.cli import cli
    from cxr_fast.explain.explainer import Explainer

    out, cams = tmp_path / "preds.parquet", tmp_path / "cams"
    common = ["score", str(synth_small), "--model", str(trained_run), "--out", str(out)]
    common += ["--device", "cpu", "--workers", "0", "--cam-dir", str(cams), "--cam-top", "1"]
    bad = CliRunner().invoke(cli, [*common, "--cam-layer", "nope"])
    assert bad.exit_code != 0 and "no layer 'nope'" in str(bad.exception or bad.output)
    assert not out.exists() and not staging_dir(out).exists()  # refused before scoring
    options = ["--cam-layer", "features.5.2", "--cam-method", "gradcam++"]
    result = CliRunner().invoke(cli, [*common, *options])
    assert result.exit_code == 0, result.output
    [row] = [r for r in pq.read_table(out).to_pylist() if r["cam_path"]]
    explainer = Explainer(trained_run, device="cpu", layer="features.5.2", method="gradcam++")
    expected = explainer.explain_file(row["path"]).picture
    assert np.array_equal(np.asarray(Image.open(row["cam_path"])), np.asarray(expected))


def test_paths_are_absolute_however_the_archive_is_typed(
    trained_run, synth_small, tmp_path, monkeypatch
):
    """One Parquet path policy: absolute paths under the resolved archive root, so a resume
    typed differently keeps its rows instead of scoring them twice."""
    monkeypatch.chdir(synth_small.parent)
    out = tmp_path / "p.parquet"
    config = ScoreConfig(
        archive=Path(synth_small.name) / "train" / "NORMAL", model=trained_run, out=out,
        device="cpu", workers=0, rows_per_chunk=8, chunk_seconds=0,
    )  # fmt: skip
    run_score(config)
    paths = pq.read_table(out)["path"].to_pylist()
    root = (synth_small / "train" / "NORMAL").resolve()
    assert all(Path(p).is_absolute() and Path(p).parent == root for p in paths)
    assert json.loads(pq.read_schema(out).metadata[b"cxr_fast_archive"]) == str(root)
    again = run_score(replace(config, archive=root, out=tmp_path / "q.parquet"))
    assert sorted(pq.read_table(again.out)["path"].to_pylist()) == sorted(paths)
