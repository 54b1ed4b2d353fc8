"""Fit a run's input gate on its training films and store it in ``model.pt`` (and in the
sidecars of the run's exports of that checkpoint): the end of training, and ``cxr-fast ood-fit``
for runs trained before the gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr_fast.data.discover import Record, discover, require_images
from cxr_fast.gate import GATE_KEY
from cxr_fast.gate.content import ContentGate
from cxr_fast.gate.fit import fit_gate
from cxr_fast.run_folder import MODEL_FILE, atomic_torch_save, atomic_write_json, read_run, sha256

# Films of a Kaggle-layout test split are never fitted on: they are for judging the run.
_HELD_OUT_SPLITS = ("test",)


@dataclass(frozen=True)
class GateFit:
    """What fitting a run's gate did."""

    run: Path
    gate: ContentGate
    exports_updated: list[Path]

    def summary(self) -> str:
        fitted = self.gate.fitted
        lines = [
            f"input gate: fitted on {fitted['films']:,} films ({fitted['patients']:,} patients), "
            f"threshold {self.gate.threshold:.2f} (out-of-distribution score; "
            f"{fitted['out_of_fold_refused']:.2%} of the films' out-of-fold views above it) "
            f"-> {self.run / MODEL_FILE}"
        ]
        if self.exports_updated:
            names = ", ".join(p.name for p in self.exports_updated)
            lines.append(f"exports of this model.pt now carry the same gate: {names}")
        return "\n".join(lines)


def training_records(data: Path) -> list[Record]:
    """The films of ``data`` a gate is fitted on: all but a Kaggle test split's."""
    found = require_images(discover(Path(data).resolve()), str(data))
    return [r for r in found if r.split not in _HELD_OUT_SPLITS]


def fit_and_store(
    run_dir: Path,
    data: Path,
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    set_total: Callable[[int], None] | None = None,
) -> GateFit:
    """Fit the gate of ``run_dir`` on the training films under ``data`` through the run's
    contract, and store it. ``set_total(films)`` is called once the films are counted."""
    _, info = read_run(run_dir)
    records = training_records(data)
    if set_total is not None:
        set_total(len(records))
    gate = fit_gate(records, info.contract, workers=workers, progress=progress)
    return GateFit(Path(run_dir), gate, store_gate(Path(run_dir), gate))


def store_gate(run_dir: Path, gate: ContentGate) -> list[Path]:
    """Write ``gate`` into ``run_dir/model.pt``; sidecars of exports made from that checkpoint
    (``RUN/export/``) get the gate and the new checksum, resealed. Returns those exports."""
    path = run_dir / MODEL_FILE
    before = sha256(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["meta"] = {**checkpoint["meta"], GATE_KEY: gate.to_dict()}
    atomic_torch_save(checkpoint, path)
    return _update_sidecars(run_dir / "export", before, sha256(path), gate.to_dict())


def _update_sidecars(folder: Path, before: str, after: str, gate: dict) -> list[Path]:
    from cxr_fast.export.sidecar import SEAL_KEY, seal

    updated = []
    for side in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("source_sha256") != before:
            continue
        if data.get(SEAL_KEY) != seal(data):  # an edited sidecar stays refused, not resealed
            continue
        data = {**data, GATE_KEY: gate, "source_sha256": after}
        data[SEAL_KEY] = seal(data)
        atomic_write_json(data, side)
        updated.append(side.with_suffix(""))
    return updated
