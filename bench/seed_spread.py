"""Several runs of one recipe (different seeds) side by side: each row of ``bench.adapt --json``
per run, with the mean and the range over the runs.

A recipe change is adopted only if it holds across seeds; one seed moves the sample's numbers by
about as much as most changes do, so this prints the spread next to every mean.

    python -m bench.adapt RUN_s0 --work runs/adapt-s0 --methods shift --json runs/s0.json  # each
    python -m bench.seed_spread runs/s0.json runs/s1.json runs/s2.json [--label recipe]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

METRICS = ("accuracy", "sensitivity", "specificity", "roc_auc")


def _row_key(name: str) -> str:
    """A row's name without what differs from run to run (fitted values in parentheses)."""
    return re.sub(r"\s*\(\{.*\}\)$", "", name)


def spread(runs: list[list[dict]]) -> dict[str, dict[str, list[float]]]:
    """For each row name present in every run, each metric's values, one per run."""
    keyed = [{_row_key(r["name"]): r for r in rows} for rows in runs]
    common = [k for k in keyed[0] if all(k in other for other in keyed[1:])]
    return {
        k: {m: [run[k].get(m) for run in keyed] for m in (*METRICS, "threshold")} for k in common
    }


def _cell(values: list) -> str:
    if any(v is None for v in values):
        return "—"
    v = np.asarray(values, dtype=float)
    each = " / ".join(f"{x:.3f}" for x in v)
    return f"{v.mean():.3f} ({v.min():.3f}–{v.max():.3f}): {each}"


def markdown(table: dict, label: str) -> list[str]:
    """One line per row: mean (min–max): each run's value, per metric."""
    lines = [
        f"| {label} | accuracy | sensitivity | specificity | ROC-AUC |",
        "|---|---|---|---|---|",
    ]
    for name, metrics in table.items():
        cells = " | ".join(_cell(metrics[m]) for m in METRICS)
        lines.append(f"| {name} | {cells} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, nargs="+", help="bench.adapt --json files, one per run")
    parser.add_argument("--label", default="mean (min–max): each run")
    args = parser.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.rows]
    print("\n".join(markdown(spread(runs), args.label)))


if __name__ == "__main__":
    main()
