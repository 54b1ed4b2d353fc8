"""`make gpu-bundle`: the wheels that scripts/gpu_check.py needs on a GPU host whose image lacks
them (and has no package registry), written to build/gpu-bundle/.

The host's image has Python 3.12 with torch, torchvision, numpy, pillow, pyarrow, click,
scikit-learn, matplotlib, tqdm and pytest. Beyond those, the check's steps import cxr-fast itself
and pydicom (every decode path imports the DICOM reader); nothing else (tests/scripts/
test_gpu_check.py runs the check with the DICOM codecs, Flask, waitress and Optuna blocked).
Wheels are for CPython 3.12 on manylinux x86_64; the bundle must stay within MAX_MIB, since the
working tree and the bundle travel to the host together within 64 MiB.

    python scripts/gpu_bundle.py [--out build/gpu-bundle]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "gpu-bundle"
# What the check imports beyond the host's image, by distribution name; their version ranges
# are pyproject.toml's (read below, never re-typed here).
PACKAGES = ("pydicom",)
PYTHON, ABI = "3.12", "cp312"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
MAX_MIB = 48


def requirement(name: str) -> str:
    """``name``'s requirement string as pyproject.toml's dependencies give it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        if re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() == name.lower():
            return spec
    raise SystemExit(f"gpu-bundle: {name} is not a dependency in pyproject.toml")


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], check=False)
    if done.returncode != 0:
        raise SystemExit(f"gpu-bundle: pip {args[0]} failed (exit {done.returncode})")


def _clean_setuptools_build() -> None:
    for path in [REPO / "build" / "lib", *(REPO / "build").glob("bdist.*")]:
        shutil.rmtree(path, ignore_errors=True)


def build(out: Path) -> list[Path]:
    """Write the bundle's wheels to ``out`` (emptied first); return them."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # The project's own wheel, built with this environment's setuptools (no download), from a
    # clean build/lib: setuptools would otherwise pack modules left there by an older build.
    _clean_setuptools_build()
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(REPO))
    _clean_setuptools_build()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _pip(
        "download", "--only-binary=:all:", "--no-deps", "--python-version", PYTHON,
        "--implementation", "cp", "--abi", ABI, *platforms, "--dest", str(out),
        *map(requirement, PACKAGES),
    )  # fmt: skip
    return sorted(out.glob("*.whl"))


def manifest(wheels: list[Path]) -> str:
    """One line per wheel: name, size, sha256."""
    lines = []
    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{wheel.name} {wheel.stat().st_size} sha256:{digest}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_bundle.py")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    wheels = build(args.out)
    total = sum(w.stat().st_size for w in wheels) / 2**20
    (args.out / "MANIFEST.txt").write_text(manifest(wheels))
    names = ", ".join(w.name for w in wheels)
    if total > MAX_MIB:
        print(f"gpu-bundle: {total:.1f} MiB is over the {MAX_MIB} MiB limit: {names}")
        return 1
    print(f"gpu-bundle: {len(wheels)} wheels, {total:.1f} MiB in {args.out}: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
