"""The benchmark harness runs, measures every stage on the same files and records the host."""

import json

from bench.throughput import main


def test_quick_run_on_real_images(kaggle_dir, tmp_path):
    code = main(
        [
            "--images",
            str(kaggle_dir / "train"),
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--batch-size",
            "16",
            "--out",
            str(tmp_path),
            "--only",
            "decode",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "throughput.json").read_text())
    stages = {row["stage"]: row for row in result["rows"]}
    assert {"fallback", "baseline"} <= set(stages)
    for row in stages.values():
        assert row["images"] == 39
        assert len(row["repeats"]) == 2 and row["median"] > 0
    assert result["host"]["cores"] >= 1 and result["host"]["torch"]
    table = (tmp_path / "throughput.md").read_text()
    assert "| baseline |" in table and "1.00x" in table


def test_training_rows_compare_each_model_with_its_baseline(kaggle_dir, tmp_path):
    args = [
        "--images",
        str(kaggle_dir / "train"),
        "--only",
        "train",
        "--image-size",
        "64",
        "--batch-size",
        "16",
        "--repeats",
        "3",
        "--warmup",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    rows = json.loads((tmp_path / "training.json").read_text())["rows"]
    stages = [row["stage"] for row in rows]
    for arch in ("cnn", "resnet18"):
        assert f"train-{arch}-torch" in stages and f"train-{arch}-baseline" in stages
    assert all(row["images"] == 32 for row in rows)  # 39 images, last partial batch dropped
    table = (tmp_path / "training.md").read_text()
    assert "| train-cnn-baseline |" in table and "1.00x" in table
