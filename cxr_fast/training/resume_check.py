"""``train --resume`` continues on the data the run started with, or refuses.

A resumed run re-discovers its data folder and re-splits it by patient. Had files been added or
removed, patients trained on in earlier epochs could land in validation (or the other way
round), and config.json would describe data the weights never saw; so the fingerprint saved at
the start must equal the one computed now.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxr_fast.errors import ResumeMismatchError
from cxr_fast.run_folder import CONFIG_FILE, read_json


def _images(fp: dict) -> int:
    return sum(sum(side.values()) for side in fp.get("counts", {}).values())


def check_same_data(run_dir: Path, current: dict) -> None:
    """ResumeMismatchError unless ``current`` (a :func:`fingerprint`) equals the saved one."""
    saved = read_json(run_dir / CONFIG_FILE).get("data")
    if not isinstance(saved, dict):
        return  # a run from before fingerprints: nothing to compare
    if saved.get("paths_sha256") == current["paths_sha256"] and saved.get(
        "patients"
    ) == current.get("patients"):
        return
    moved = set(saved.get("patients", {}).get("train", [])) & set(
        current.get("patients", {}).get("val", [])
    )
    split = f"; {len(moved)} patients trained on would move into validation" if moved else ""
    raise ResumeMismatchError(
        f"cannot resume {run_dir}: the data under {current['root']} changed since the run "
        f"started ({_images(saved)} training+validation images then, {_images(current)} now"
        f"{split}); restore the data, or train a new run in another --out"
    )


def check_same_folder(run_dir: Path, saved_data: str, given: str | os.PathLike | None) -> None:
    """ResumeMismatchError when ``--data`` was given with ``--resume`` and names another folder
    than the run's own (``saved_data``): resume never switches data, and ignoring the option
    would train on the run's data while the user thinks it trains on theirs."""
    if given is None:
        return
    saved = read_json(run_dir / CONFIG_FILE).get("data")
    # The fingerprint's absolute root: config's "data" may be relative to where it started.
    root = saved["root"] if isinstance(saved, dict) and "root" in saved else saved_data
    if os.path.realpath(given) == os.path.realpath(root):
        return
    raise ResumeMismatchError(
        f"cannot resume {run_dir} with --data {given}: the run was trained on {root} (resume "
        "uses the run's own data; start a new --out for other data)"
    )
