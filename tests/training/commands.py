"""The `cxr-fast train` command line the subprocess tests run: a small, fast cnn recipe."""

import sys


def train_command(data, out, *extra: str) -> list[str]:
    """argv for a one-model cnn training at 64 px on ``data`` into ``out``, ``extra`` appended."""
    return [
        sys.executable,
        "-m",
        "cxr_fast",
        "train",
        "--arch",
        "cnn",
        "--folds",
        "1",
        "--data",
        str(data),
        "--out",
        str(out),
        "--image-size",
        "64",
        "--batch-size",
        "16",
        "--val-fraction",
        "0.25",
        "--lr",
        "3e-3",
        "--warmup-epochs",
        "0.5",
        "--workers",
        "0",
        "--patience",
        "12",
        "--export",
        "none",  # tests/training/test_export_step.py covers the export at the end
        *extra,
    ]
