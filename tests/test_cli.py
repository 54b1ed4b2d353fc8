"""The command line: help for every option, one-line errors, and the data commands end to end."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cxr_fast.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in _commands(cli)], ids=" ".join)
def test_every_command_and_option_is_explained(path):
    command = cli
    for name in path:
        command = command.commands[name]
    assert command.help and command.help.strip()
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxr_fast", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("data", "check", "/no/such/folder"),
        ("data", "stream", "/no/such/folder"),
        ("data", "synth", "/tmp/x", "--min-size", "900", "--max-size", "100"),
        ("data", "stream", "tests/data/images/kaggle", "--loader", "opencv"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(args):
    result = _run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-fast: error:")


def test_cuda_asked_for_without_cuda_is_one_line(kaggle_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    result = _run("data", "stream", str(kaggle_dir), "--device", "cuda")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cxr-fast: error: --device cuda was asked for, but CUDA is not available here"
    )


def test_synth_check_and_stream(tmp_path, kaggle_dir):
    runner = CliRunner()
    out = tmp_path / "synth"
    synth = ["data", "synth", str(out), "--n", "12", "--min-size", "64", "--max-size", "96"]
    result = runner.invoke(cli, [*synth, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 12 images" in result.output

    result = runner.invoke(cli, ["data", "check", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert '"leaked_patients": {}' in result.output

    result = runner.invoke(cli, ["data", "check", str(kaggle_dir)])
    assert result.exit_code == 0
    assert "train" in result.output and "20" in result.output and "19" in result.output

    for loader in ("torch", "dali"):
        result = runner.invoke(
            cli, ["data", "stream", str(out), "--loader", loader, "--batch-size", "5"]
        )
        assert result.exit_code == 0, result.output
        assert "12 images in" in result.output and f"({loader}," in result.output


def test_check_exits_1_on_unreadable_files(tmp_path, kaggle_dir):
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL" / "IM-0001-0001.jpeg").write_bytes(b"")
    result = CliRunner().invoke(cli, ["data", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "unreadable: 1 of 1" in result.output


def test_check_of_an_empty_or_unreadable_tree_exits_1_with_a_hint(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = CliRunner().invoke(cli, ["data", "check", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"cxr-fast: no .jpeg/.jpg/.png/.dcm images under {tmp_path / 'empty'} (1 other file): "
        "expected the Kaggle layout ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/ or any folder "
        "of images"
    ]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpeg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(cli, ["data", "check", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "1 image\n" in result.output
    assert "none of the 1 decoded image could be read" in result.output


def test_help_does_not_load_pytorch():
    """`cxr-fast --help` answers at once: the CLI module imports no torch, DALI or Flask."""
    from tests.loaded_modules import loaded_by

    heavy = {"torch", "nvidia.dali", "flask", "torchvision"}
    assert heavy.isdisjoint(loaded_by("cxr_fast.cli", tuple(heavy)))
