"""Run the README's examples and write what they print back into it, so the docs never drift.

A console block is regenerated when the line before its fence is ``<!-- example -->``; other
blocks (hours-long training runs on the full dataset, a server) are quoted from the runs they
name. ``<!-- example: setup COMMAND -->`` runs COMMAND first, unshown. Every command runs from
the repository root with this checkout's code, on the demo run that ``make demo`` makes
(``.cache/demo``), through bash; its stdout and stderr, in order, replace the lines under it.

Usage: python scripts/readme_examples.py [README.md]   (make readme-examples)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_RUN = ROOT / ".cache" / "demo" / "run" / "model.pt"
MARKER = re.compile(r"^<!-- example(?::\s*setup\s+(?P<setup>.*?))?\s*-->$")
TIMEOUT_S = 900


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)  # this checkout's cxr_fast, not an installed one
    env["PYTHONWARNINGS"] = "ignore"  # library deprecation notes are not the tool's output
    env.pop("CXR_FAST_DEBUG", None)
    return env


def run(command: str) -> str:
    """What ``command`` prints (stdout and stderr interleaved), paths relative to the root."""
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    text = result.stdout.replace(f"{ROOT}/", "")
    return "\n".join(line.rstrip() for line in text.splitlines() if "\r" not in line)


def commands(block: list[str]) -> list[list[str]]:
    """The ``$ `` commands of a console block, each with its continuation lines."""
    found: list[list[str]] = []
    continuing = False
    for line in block:
        if line.startswith("$ ") or continuing:
            if continuing:
                found[-1].append(line)
            else:
                found.append([line])
            continuing = line.endswith("\\")
    return found


def regenerate(lines: list[str], log=print) -> list[str]:
    """``lines`` of a README with every marked console block run again."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        marker = MARKER.match(line)
        if not marker or i + 1 >= len(lines) or lines[i + 1] != "```console":
            i += 1
            continue
        end = lines.index("```", i + 2)
        if marker["setup"]:
            run(marker["setup"])
        out.append("```console")
        for command in commands(lines[i + 2 : end]):
            text = "\n".join(command)
            log(text)
            out.extend(command)
            printed = run(text.replace("\\\n", " ").removeprefix("$ "))
            out.extend(printed.splitlines())
        out.append("```")
        i = end + 1
    return out


def main(argv: list[str]) -> int:
    readme = Path(argv[1]) if len(argv) > 1 else ROOT / "README.md"
    if not DEMO_RUN.is_file():
        print(f"{DEMO_RUN.relative_to(ROOT)} is missing: run `make demo` first", file=sys.stderr)
        return 2
    lines = readme.read_text().splitlines()
    new = regenerate(lines)
    readme.write_text("\n".join(new) + "\n")
    print(f"{readme}: {sum(1 for line in lines if MARKER.match(line))} examples regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
