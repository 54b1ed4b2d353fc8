"""Every user mistake of issue 11 is one line and exit 2, never a traceback; bugs keep theirs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxr_fast.errors import CxrFastError, NotFoundError, UserInputError

AS_ROOT = os.geteuid() == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxr_fast", *args], capture_output=True, text=True, timeout=300
    )


def _one_line_exit_2(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-fast: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def export_copy(trained_run, tmp_path_factory) -> Path:
    from cxr_fast.export import export_run

    folder = tmp_path_factory.mktemp("export")
    return export_run(trained_run, "torchscript", out=folder / "m.ts", device="cpu").path


@pytest.fixture(scope="module")
def truncated_run(trained_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("truncated") / "run"
    shutil.copytree(trained_run, run)
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[: len(data) // 2])
    return run


@pytest.fixture(scope="module")
def pickled_code_run(trained_run, tmp_path_factory) -> Path:
    from tests.bad_files import add_pickled_code

    run = tmp_path_factory.mktemp("pickled") / "run"
    shutil.copytree(trained_run, run)
    add_pickled_code(run / "model.pt")
    return run


def test_the_family_keeps_builtin_catches_working():
    assert issubclass(UserInputError, ValueError) and issubclass(UserInputError, CxrFastError)
    assert issubclass(NotFoundError, FileNotFoundError)
    from cxr_fast.data.decode import ImageReadError
    from cxr_fast.export import ExportError

    assert issubclass(ImageReadError, CxrFastError) and issubclass(ExportError, CxrFastError)


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    from cxr_fast import cli

    def broken(*_args, **_kwargs):
        raise ValueError("a bug, not a user mistake")

    monkeypatch.setattr(cli.cli, "main", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main()


def test_score_with_a_model_that_is_not_one(trained_run, kaggle_dir, tmp_path):
    base = [str(kaggle_dir), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"]
    _one_line_exit_2(_cli("score", *base, "--model", "README.md"), "README.md", "sidecar")
    _one_line_exit_2(
        _cli("score", *base, "--model", str(trained_run / "model.pt")),
        "pass the run folder itself",
        f"--model {trained_run}",
    )


def test_exports_with_a_missing_invalid_or_edited_sidecar_or_a_truncated_file(
    export_copy, kaggle_dir, tmp_path
):
    side = export_copy.with_name(export_copy.name + ".json")
    original = json.loads(side.read_text())
    base = ["score", str(kaggle_dir), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"]
    cases = [
        ("missing", None, "has no sidecar"),
        ("invalid", "{not json", "not a readable sidecar"),
        ("edited", json.dumps({**original, "threshold": 0.99}), "was edited"),
    ]
    try:
        for _name, text, needle in cases:
            side.unlink(missing_ok=True)
            if text is not None:
                side.write_text(text)
            _one_line_exit_2(_cli(*base, "--model", str(export_copy)), needle)
        side.write_text(json.dumps(original))
        truncated = tmp_path / "m.ts"
        truncated.write_bytes(export_copy.read_bytes()[:1000])
        truncated.with_name("m.ts.json").write_text(json.dumps(original))
        _one_line_exit_2(_cli(*base, "--model", str(truncated)), "not the file its sidecar")
    finally:
        side.write_text(json.dumps(original))


def test_sidecar_fields_outside_the_seal_edited_or_removed(export_copy, kaggle_dir, tmp_path):
    side = export_copy.with_name(export_copy.name + ".json")
    original = json.loads(side.read_text())
    base = ["score", str(kaggle_dir), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"]
    calibration = {
        "temperature": 1.4,
        "bias": -0.3,
        "sample": {"n": 120},
        "source_model_sha256": original["source_sha256"],
    }
    no_calibration = {k: v for k, v in original.items() if k != "calibration"}
    cases = [
        (
            {**original, "calibration": {**calibration, "temperature": None}},
            "calibration.temperature is not a positive number",
        ),
        ({**original, "calibration": {"sample": {"n": 120}}}, "calibration lacks temperature"),
        ({**original, "calibration": "platt"}, "calibration is neither null nor an object"),
        (no_calibration, "lacks calibration"),
        # The file is TorchScript: ONNX Runtime would fail on it with InvalidProtobuf.
        ({**original, "format": "onnx"}, "says format 'onnx'", "is a TorchScript archive"),
        ({**original, "format": "pt2"}, "says format 'pt2'"),
    ]
    try:
        for data, *needles in cases:
            side.write_text(json.dumps(data))
            _one_line_exit_2(_cli(*base, "--model", str(export_copy)), *needles, "re-export")
        # A calibrated export's own fields pass.
        side.write_text(json.dumps({**original, "calibration": calibration}))
        result = _cli(*base, "--model", str(export_copy))
        assert result.returncode == 0, result.stderr
    finally:
        side.write_text(json.dumps(original))


def test_every_unsealed_field_a_loader_reads_is_checked(export_copy):
    from cxr_fast.export.sidecar import unsealed_problem

    original = json.loads(export_copy.with_name(export_copy.name + ".json").read_text())
    assert unsealed_problem(original) is None
    edits = [
        ({"file_sha256": 12}, "file_sha256"),
        (
            {
                "calibration": {
                    "temperature": 1.2,
                    "bias": "up",
                    "sample": {},
                    "source_model_sha256": "",
                }
            },
            "calibration.bias",
        ),
        ({"threshold_choice": "margin"}, "threshold_choice"),
        ({"members": 0}, "members"),
        ({"members": True}, "members"),
        ({"input": [1, 64, 64]}, "input is not an object"),
        ({"input": {**original["input"], "batch_max": 0}}, "input.batch_max"),
        ({"device": "gpu"}, "device 'gpu'"),
        ({"speed": {"speedup_vs_eager": "fast"}}, "speed"),
        ({"engine": {"gpu": "H100"}}, "records a TensorRT engine"),
    ]
    for edit, needle in edits:
        problem = unsealed_problem({**original, **edit})
        assert problem is not None and needle in problem, (edit, problem)


def test_a_truncated_checkpoint_in_score_evaluate_and_serve(truncated_run, kaggle_dir, tmp_path):
    needle = "model.pt is unreadable"
    _one_line_exit_2(
        _cli(
            "score",
            str(kaggle_dir),
            "--model",
            str(truncated_run),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "p.parquet"),
        ),
        needle,
    )
    _one_line_exit_2(
        _cli("evaluate", str(truncated_run), "--data", str(kaggle_dir), "--device", "cpu"),
        needle,
    )
    _one_line_exit_2(_cli("serve", str(truncated_run), "--port", "0", "--device", "cpu"), needle)


def test_a_checkpoint_carrying_code_is_refused_plainly(pickled_code_run, kaggle_dir):
    result = _cli("evaluate", str(pickled_code_run), "--data", str(kaggle_dir), "--device", "cpu")
    line = _one_line_exit_2(
        result,
        "model.pt refused: loading it would run code from the file",
        "builtins.print",
        "not a plain cxr-fast checkpoint",
    )
    assert "weights_only" not in line and "truncated" not in line
    assert "code from the file ran" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "where, needle",
    [
        ("dir", "is a folder"),
        ("under_file", "a file of that name is in the way"),
        ("/sys/p.parquet", "cannot write in /sys"),
        ("/proc/p.parquet", "cannot write in /proc"),
        ("unwritable", "Permission denied"),
    ],
)
def test_outputs_that_cannot_be_written(trained_run, kaggle_dir, tmp_path, where, needle):
    if where == "unwritable" and AS_ROOT:
        pytest.skip("root writes anywhere")
    if where == "dir":
        out = tmp_path / "existing"
        out.mkdir()
    elif where == "under_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "p.parquet"
    elif where == "unwritable":
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "p.parquet"
    else:
        out = Path(where)
    result = _cli(
        "score",
        str(kaggle_dir),
        "--model",
        str(trained_run),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--overwrite",
    )
    _one_line_exit_2(result, needle)
