"""Timing statistics, host description and the JSON/Markdown outputs of a benchmark run."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cxr_fast.versions import package_version


@dataclass(frozen=True)
class Row:
    """One measured stage: images/s over repeats (median and spread)."""

    stage: str
    detail: str
    images: int
    repeats: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.repeats)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "median": self.median,
            "min": min(self.repeats),
            "max": max(self.repeats),
        }


def measure(stage: str, detail: str, run: Callable[[], int], *, warmup: int, repeats: int) -> Row:
    """Call ``run`` (which returns images processed) ``warmup`` + ``repeats`` times."""
    for _ in range(warmup):
        run()
    rates = []
    images = 0
    for _ in range(repeats):
        start = time.perf_counter()
        images = run()
        rates.append(images / (time.perf_counter() - start))
    return Row(stage=stage, detail=detail, images=images, repeats=rates)


def host_info() -> dict:
    """CPU, GPU and package versions, recorded with every result."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "nvidia-dali": package_version("nvidia-dali-cuda120"),
        "pillow": package_version("pillow"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _baseline_of(row: Row, rows: list[Row], baseline: str | None) -> float | None:
    """The baseline row a row compares with: ``baseline`` by name, or else the row of the same
    group (``train-cnn-dali`` -> ``train-cnn-baseline``)."""
    name = baseline or row.stage.rsplit("-", 1)[0] + "-baseline"
    return next((r.median for r in rows if r.stage == name), None)


def markdown(rows: list[Row], baseline: str | None, host: dict, title: str) -> str:
    """A Markdown table with each row's ratio to its baseline row."""
    lines = [
        f"### {title}",
        "",
        f"{host['cpu']}, {host['cores']} cores, GPU: {host['gpu'] or 'none'}; torch "
        f"{host['torch']}, DALI {host['nvidia-dali']}, Pillow {host['pillow']}",
        "",
        "| stage | detail | images | images/s (median) | min-max | vs baseline |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = _baseline_of(row, rows, baseline)
        ratio = f"{row.median / base:.2f}x" if base else "-"
        spread = f"{min(row.repeats):.1f}-{max(row.repeats):.1f}"
        lines.append(
            f"| {row.stage} | {row.detail} | {row.images} | {row.median:.1f} | {spread} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out: Path, name: str, rows: list[Row], host: dict, text: str) -> Path:
    """Write ``name.json`` and ``name.md`` under ``out``; return the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"host": host, "rows": [r.to_dict() for r in rows]}, indent=2))
    (out / f"{name}.md").write_text(text)
    return path
