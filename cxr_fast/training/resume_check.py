"""``train --resume`` continues on the data the run started with, or refuses.

A resumed run re-discovers its data folder and re-splits it by patient. Had files been added or
removed, patients trained on in earlier epochs could land in validation (or the other way
round), and config.json would describe data the weights never saw; so the fingerprint saved at
the start must equal the one computed now.
"""

from __future__ import annotations

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
