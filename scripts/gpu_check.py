"""One prepared check of a CUDA host, in one command that cannot waste the visit (issue 28).

    python3 scripts/gpu_check.py --out $OUT                        # on the GPU host
    python3 scripts/gpu_check.py --device cpu --quick --out DIR    # the same plumbing on a CPU

It installs the wheels of ``build/gpu-bundle/`` (``make gpu-bundle``: what the steps import and
the host's image lacks) with ``pip install --no-index --no-deps --target`` into a temporary
folder on the steps' PYTHONPATH, then runs each step of ``scripts/gpu_steps.py`` in its own
process group with a timeout, within one time budget (8 minutes; 280 s with ``--quick``). A
step ends as a status (ok, failed, skipped), its seconds, its numbers and one message, never a
traceback: each step's own output is in ``DIR/logs/STEP.log``. ``DIR/gpu_check.json`` is
rewritten after every step (a visit cut short still brings back what ran) and ``DIR/gpu_check.md``
holds the table, which is also printed. Exit status 1 when a step failed.

This file imports only the standard library: it must report even where torch does not import.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS_SCRIPT = REPO / "scripts" / "gpu_steps.py"
BUNDLE = REPO / "build" / "gpu-bundle"
RESULT_MARK = "GPU_CHECK_RESULT "
# (step, seconds it may take on the GPU host, seconds with --quick). The budget below caps
# the sum: a step that would start with too little time left is skipped, not started.
# --quick's caps are generous for a busy CI machine (unloaded, the run takes about 70 s).
STEPS = (
    ("environment", 60, 60),
    ("films", 120, 60),
    ("decode", 120, 60),
    ("train_speed", 150, 90),
    ("tiny_run", 150, 120),
    ("export", 150, 120),
    ("score", 200, 120),
    ("pytest_gpu", 180, 60),
)
NEEDS = {
    "decode": ("films",),
    "tiny_run": ("films",),
    "export": ("tiny_run",),
    "score": ("films", "tiny_run"),
}
BUDGET_SECONDS = {False: 480, True: 280}
MIN_STEP_SECONDS = 15
BUNDLE_SECONDS = 120


def _kill_group(proc: subprocess.Popen) -> None:
    """End a step's process group: its children (DataLoader workers, a pytest run) too."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(text: str) -> str:
    """The telling line of a failed process's output (never a traceback's header)."""
    lines = [x.strip() for x in text.splitlines() if x.strip() and "Traceback" not in x]
    return lines[-1][:300] if lines else "no output"


def _outcome(log: Path, code: int) -> dict:
    """A step's result line from its log, or a failure naming how the process ended."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                return json.loads(line[len(RESULT_MARK) :])
            except ValueError:
                break
    how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
    return {"status": "failed", "message": f"{how} without a result: {_last_line(text)}"}


def run_step(name: str, args: argparse.Namespace, seconds: float, env: dict, logs: Path) -> dict:
    """Run one step of scripts/gpu_steps.py in its own process group for at most ``seconds``."""
    command = [sys.executable, str(STEPS_SCRIPT), name, "--device", args.device]
    command += ["--work", str(args.work), "--seconds", f"{seconds:.0f}"]
    command += ["--quick"] if args.quick else []
    log = logs / f"{name}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            code = proc.wait(seconds)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            result = {"status": "failed", "message": f"timed out after {seconds:.0f} s: killed"}
        except BaseException:  # Ctrl-C: leave no step behind on the GPU
            _kill_group(proc)
            raise
        else:
            result = _outcome(log, code)
    result["seconds"] = round(time.monotonic() - started, 1)
    return {"name": name, **result}


def install_bundle(bundle: Path, site: Path, env: dict) -> dict:
    """The bundle's wheels into ``site`` (pip, no index, no dependencies): a row of the table."""
    wheels = sorted(bundle.glob("*.whl"))
    row = {"name": "bundle", "seconds": 0.0, "numbers": {"wheels": len(wheels)}}
    if not wheels:
        return {**row, "status": "skipped", "message": f"no wheels in {bundle} (make gpu-bundle)"}
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet"]
    command += ["--disable-pip-version-check", "--target", str(site), *map(str, wheels)]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BUNDLE_SECONDS, env=env
        )
    except subprocess.TimeoutExpired:
        done = None
    row["seconds"] = round(time.monotonic() - started, 1)
    if done is None or done.returncode != 0:
        why = "timed out" if done is None else _last_line(done.stderr + done.stdout)
        try:  # a wheel is a zip: unpacked as is, a pure-Python one is installed all the same
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(site)
        except (OSError, zipfile.BadZipFile) as exc:
            message = f"pip install --no-index failed ({why}), and unpacking too: {exc}"
            return {**row, "status": "failed", "message": message}
        return {**row, "status": "ok", "message": f"pip failed ({why}): wheels unpacked"}
    names = ", ".join(w.name.split("-")[0] for w in wheels)
    return {**row, "status": "ok", "message": f"installed {names}"}


def _blocked_by(name: str, rows: dict[str, dict]) -> str | None:
    """Why ``name`` cannot run: a step it needs did not succeed, or no CUDA device."""
    env = rows.get("environment", {})
    if name != "environment" and env.get("status") == "failed":
        return f"environment failed ({env.get('message', '')[:120]})"
    for need in NEEDS.get(name, ()):
        if rows.get(need, {}).get("status") != "ok":
            return f"needs {need}, which did not succeed"
    return None


def _cell(value: object) -> str:
    """Text safe inside one Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def _numbers(numbers: dict) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items()
    )


def table(report: dict) -> str:
    """The Markdown table of a report: one row per step."""
    lines = [
        f"gpu-check on {_cell(report['host'])}, device {report['device']}"
        + (", --quick" if report["quick"] else "")
        + f", {report['seconds']:.0f} s",
        "",
        "| step | status | seconds | numbers | message |",
        "|---|---|---:|---|---|",
    ]
    for row in report["steps"]:
        cells = (row["name"], row["status"], f"{row.get('seconds', 0):.1f}")
        cells += (_numbers(row.get("numbers", {})), row.get("message", ""))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if report.get("peak_gpu_memory_mib") is not None:
        lines += ["", f"peak GPU memory: {report['peak_gpu_memory_mib']:.0f} MiB"]
    return "\n".join(lines) + "\n"


def _write(out: Path, report: dict) -> None:
    peaks = [
        v for r in report["steps"] for k, v in r.get("numbers", {}).items() if k.endswith("gpu_mib")
    ]
    report["peak_gpu_memory_mib"] = max(peaks) if peaks else None
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")


def _host(rows: dict[str, dict]) -> str:
    numbers = rows.get("environment", {}).get("numbers", {})
    return str(numbers.get("gpu") or numbers.get("cpu") or platform.node())


def _step_env(site: Path) -> dict:
    """The steps' environment: the working tree first (what runs is what was carried), then
    the bundle, then whatever PYTHONPATH already held."""
    held = filter(None, os.environ.get("PYTHONPATH", "").split(":"))
    paths = [str(REPO), str(site), *held]
    return {**os.environ, "PYTHONPATH": ":".join(paths), "PYTHONUNBUFFERED": "1"}


def run_check(args: argparse.Namespace) -> dict:
    """Every step in order within the budget; the report (also written after each step)."""
    started = time.monotonic()
    budget = args.budget or BUDGET_SECONDS[args.quick]
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(sys.argv), "device": args.device, "quick": args.quick}
    report.update({"host": platform.node(), "seconds": 0.0, "steps": []})
    site = args.work / "site"
    report["steps"].append(install_bundle(args.bundle, site, dict(os.environ)))
    env = _step_env(site)
    rows: dict[str, dict] = {}
    for name, full, quick in STEPS:
        left = budget - (time.monotonic() - started)
        seconds = min(quick if args.quick else full, left)
        blocked = _blocked_by(name, rows)
        if blocked is None and seconds < MIN_STEP_SECONDS:
            blocked = f"out of time ({left:.0f} s of the {budget} s budget left)"
        if blocked is not None:
            row = {"name": name, "status": "skipped", "seconds": 0.0, "message": blocked}
        else:
            print(f"gpu-check: {name} (at most {seconds:.0f} s) ...", flush=True)
            row = run_step(name, args, seconds, env, logs)
        rows[name] = row
        report["steps"].append(row)
        report["host"] = _host(rows)
        report["seconds"] = round(time.monotonic() - started, 1)
        print(f"gpu-check: {name}: {row['status']}: {row.get('message', '')}", flush=True)
        _write(args.out, report)
    return report


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu_check.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="Folder for the JSON and table.")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu.")
    parser.add_argument("--quick", action="store_true", help="Small sizes: the plumbing only.")
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="Wheels to install first.")
    parser.add_argument("--budget", type=int, default=0, help="Seconds for every step together.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: temp).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cxr-gpu-check-") as scratch:
        args.work = (args.work or Path(scratch)).resolve()
        args.work.mkdir(parents=True, exist_ok=True)
        report = run_check(args)
    text = table(report)
    (args.out / "gpu_check.md").write_text(text)
    print("\n" + text, end="")
    return 1 if any(r["status"] == "failed" for r in report["steps"]) else 0


if __name__ == "__main__":
    sys.exit(main())
