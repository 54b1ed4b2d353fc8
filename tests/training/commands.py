"""The `cxr-fast train` command line the subprocess tests run: a small, fast cnn recipe."""

import sys

from cxr_fast.data.augment import Augment
from cxr_fast.training.config import AugmentOptions

# The recipe's augmentation without the aspect stretch, for the tests that check training
# mechanics (learning, DDP, the int8 export's accuracy check) in a few dozen steps on synthetic
# films: the stretch slows that down. It is tested in tests/data/test_augment.py and measured on
# real films in docs/results.md.
MECHANICS_AUGMENT = Augment().scaled(AugmentOptions.aug_strength)


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
        "--no-gate",  # synthetic films: tests/gate/ covers the gate fitted when training ends
        *extra,
    ]
