"""scripts/gpu_check.py's plumbing on the CPU (--device cpu --quick), in a Python that cannot
import what a GPU host's image lacks: every step runs in its own process and ends as a row of
the JSON and the table, never as a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Never on the GPU host (DALI, Torch-TensorRT, ONNX Runtime), and not in build/gpu-bundle
# either (the DICOM codecs, the web app, Optuna): the check must not need any of them.
BLOCKED = (
    "nvidia.dali", "torch_tensorrt", "onnxruntime",
    "gdcm", "imagecodecs", "flask", "waitress", "optuna",
)  # fmt: skip
# A None in sys.modules is Python's own "absent": import raises ModuleNotFoundError and
# importlib.util.find_spec answers None (torch asks it about optional packages at import).
BLOCKER = f"import sys\n\nsys.modules.update(dict.fromkeys({BLOCKED!r}))\n"


def test_the_quick_cpu_check_runs_every_step_without_the_gpu_only_packages(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    probe = "import nvidia.dali"
    assert subprocess.run([sys.executable, "-c", probe], env=env).returncode != 0
    out = tmp_path / "out"
    empty = tmp_path / "no-bundle"
    empty.mkdir()
    command = ["scripts/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, *command, "--bundle", str(empty)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {row["name"]: row for row in report["steps"]}
    assert list(steps) == [
        "bundle", "environment", "films", "decode", "train_speed",
        "tiny_run", "export", "score", "pytest_gpu",
    ]  # fmt: skip
    # ok, or skipped for a reason it names: no bundle, or (on a machine busy enough to use up
    # the budget) no time left for the last steps.
    assert steps["bundle"]["status"] == "skipped"
    for name, row in steps.items():
        assert row["status"] == "ok" or (
            row["status"] == "skipped" and row["message"].startswith(("no wheels", "out of time"))
        ), (name, row)
    assert steps["environment"]["numbers"]["nvidia.dali"] is False
    assert "DALI skipped" in steps["decode"]["message"]
    assert steps["decode"]["numbers"]["nvjpeg_loader_per_s"] > 0
    assert steps["train_speed"]["numbers"]["resnet18_ratio"] > 0
    if steps["score"]["status"] == "ok":
        assert steps["score"]["numbers"]["score_rows"] == steps["films"]["numbers"]["films"]
    table = (out / "gpu_check.md").read_text()
    assert table.count("\n| ") == 1 + len(steps)  # the header and one row per step
    assert all(line.count(" | ") == 4 for line in table.splitlines() if line.startswith("| "))


def test_a_failing_step_is_a_row_and_the_exit_status_not_a_traceback(tmp_path):
    """A CUDA check on a host without CUDA: the environment step fails with one line, every
    other step is skipped for it, and the check still writes its JSON and table."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", "--out", str(out), "--bundle", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    steps = {row["name"]: row for row in json.loads((out / "gpu_check.json").read_text())["steps"]}
    assert steps["environment"]["status"] == "failed"
    assert "no CUDA device" in steps["environment"]["message"]
    assert {
        row["status"] for name, row in steps.items() if name not in ("bundle", "environment")
    } == {"skipped"}
    assert (out / "gpu_check.md").exists()


def _load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel: one module ``cxr_demo`` holding VALUE = 7."""
    import zipfile

    path = folder / "cxr_demo-1.0-py3-none-any.whl"
    info = "cxr_demo-1.0.dist-info"
    files = {
        "cxr_demo/__init__.py": "VALUE = 7\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: cxr-demo\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_the_bundle_installs_with_pip_and_is_unpacked_where_pip_fails(tmp_path):
    gpu_check = _load_gpu_check()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _wheel(bundle)
    broken = tmp_path / "broken"  # a `pip` that shadows the real one and fails, as on a bare host
    (broken / "pip").mkdir(parents=True)
    (broken / "pip" / "__init__.py").write_text("")
    (broken / "pip" / "__main__.py").write_text("raise SystemExit('no pip here')\n")
    envs = {"pip": dict(os.environ), "no pip": {**os.environ, "PYTHONPATH": str(broken)}}
    for name, env in envs.items():
        site = tmp_path / name
        row = gpu_check.install_bundle(bundle, site, env)
        assert row["status"] == "ok", row
        assert ("unpacked" in row["message"]) == (name == "no pip"), row
        check = [sys.executable, "-c", "import cxr_demo; print(cxr_demo.VALUE)"]
        done = subprocess.run(check, env={**os.environ, "PYTHONPATH": str(site)}, text=True,
                              capture_output=True)  # fmt: skip
        assert done.stdout.strip() == "7", (name, done.stderr)
    assert gpu_check.install_bundle(tmp_path / "none", tmp_path / "x", {})["status"] == "skipped"
