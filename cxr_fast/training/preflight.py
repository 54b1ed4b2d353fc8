"""Before the first epoch: every training and validation file must decode, or be skipped on
request (``--skip-bad``), never found bad by a DataLoader worker half-way through epoch 1."""

from __future__ import annotations

from dataclasses import replace

from cxr_fast.data.bad_file_scan import BadFile, describe, find_bad_files
from cxr_fast.errors import UserInputError
from cxr_fast.text import agree
from cxr_fast.training.train_data import TrainData


class BadTrainingFilesError(UserInputError):
    """Training or validation files that do not decode, without ``--skip-bad``."""


def checked(data: TrainData, skip_bad: bool) -> tuple[TrainData, list[BadFile]]:
    """``data`` when every file decodes; with ``skip_bad``, ``data`` without the bad files
    (the split is kept as it is) and the files dropped; else BadTrainingFilesError."""
    records = [*data.train, *data.val]
    bad = find_bad_files(records)
    if not bad:
        return data, []
    if not skip_bad:
        raise BadTrainingFilesError(
            f"{describe(bad, len(records))}: fix or remove {agree(len(bad), 'it', 'them')}, or "
            f"pass --skip-bad to train without {agree(len(bad), 'it', 'them')}"
        )
    dropped = {b.path for b in bad}
    kept = replace(
        data,
        train=[r for r in data.train if r.path not in dropped],
        val=[r for r in data.val if r.path not in dropped],
    )
    return kept, bad
