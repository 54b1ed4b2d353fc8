"""Options declared once on a config dataclass: the checks, the --help sections and --config."""

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cxr_fast.cli import cli
from cxr_fast.cli_options import StageCommand
from cxr_fast.configs import StreamConfig, SynthConfig
from cxr_fast.errors import UserInputError
from cxr_fast.export.export_stage import ExportConfig
from cxr_fast.scoring.score_config import ScoreConfig
from tests.cli_in_process import assert_one_line, run_main


def test_help_lists_options_under_their_sections_in_order():
    text = CliRunner().invoke(cli, ["score", "--help"]).output
    headings = [line for line in text.splitlines() if line.endswith(" options:")]
    assert headings == [
        "Data options:",
        "Model options:",
        "Run options:",
        "Output options:",
        "Other options:",
    ]
    model = text.index("Model options:")
    assert model < text.index("  --model PATH") < text.index("Run options:")
    assert text.index("Output options:") < text.index("  --cam-dir DIRECTORY")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (
            lambda: ExportConfig(Path("run"), "auto", batch_size=1),
            "--batch-size must be >= 2, got 1",
        ),
        (lambda: ExportConfig(Path("run"), "zip"), "--format must be one of auto, torchscript"),
        (lambda: StreamConfig(Path("d"), image_size=5000), "--image-size must be in [8, 4096]"),
        (lambda: ScoreConfig(Path("a"), Path("m"), Path("o"), chunk_seconds=-1), "--chunk-seconds"),
        (lambda: SynthConfig(Path("o"), min_size=900, max_size=100), "larger than --max-size"),
        (
            lambda: ScoreConfig(Path("a"), Path("m"), Path("o"), chunk_seconds=float("nan")),
            "--chunk-seconds must be a number, got nan",
        ),
    ],
)
def test_the_library_checks_the_declared_ranges_in_one_line(make, needle):
    with pytest.raises(UserInputError) as caught:
        make()
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_range_mistakes_on_the_command_line_are_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "data", "stream", tmp_path, "--image-size", "4")
    assert_one_line(code, err, "--image-size", "8<=x<=4096")


def _synth(monkeypatch, capsys, out: Path, *args) -> tuple[int, str, str]:
    return run_main(monkeypatch, capsys, "data", "synth", out, *args)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_values_and_the_command_line_over_them(monkeypatch, capsys, tmp_path, suffix):
    values = {"n": 3, "min-size": 64, "max_size": 80, "workers": 1, "seed": 4}
    file = tmp_path / f"synth{suffix}"
    if suffix == ".json":
        file.write_text(json.dumps(values))
    else:
        file.write_text("".join(f"{key} = {value}\n" for key, value in values.items()))
    code, out, err = _synth(monkeypatch, capsys, tmp_path / "a", "--config", file)
    assert code == 0, err
    assert "wrote 3 images" in out
    code, out, err = _synth(monkeypatch, capsys, tmp_path / "b", "--config", file, "--n", "2")
    assert code == 0, err
    assert "wrote 2 images" in out  # the command line wins over the file


def test_unknown_or_bad_config_file_keys_are_one_clear_line(monkeypatch, capsys, tmp_path):
    file = tmp_path / "synth.toml"
    file.write_text("n = 3\nimage_size = 64\n")
    code, _, err = _synth(monkeypatch, capsys, tmp_path / "a", "--config", file)
    assert_one_line(code, err, str(file), "unknown option 'image_size'")
    file.write_text("n = 0\n")
    code, _, err = _synth(monkeypatch, capsys, tmp_path / "a", "--config", file)
    assert_one_line(code, err, str(file), "--n", "0 is not in the range x>=1")
    file.write_text('seed = "abc"\n')
    code, _, err = _synth(monkeypatch, capsys, tmp_path / "a", "--config", file)
    assert_one_line(code, err, "--seed", "'abc' is not a valid integer")
    file.write_text("n = [\n")
    code, _, err = _synth(monkeypatch, capsys, tmp_path / "a", "--config", file)
    assert_one_line(code, err, "is not a valid config file")


def test_a_required_option_left_out_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "ood-fit", tmp_path)
    assert_one_line(code, err, "Missing option '--data'")


def test_train_config_defaults_are_the_run_the_command_makes(kaggle_dir, tmp_path):
    from cxr_fast.training.config import TrainConfig

    args = ["train", "--data", str(kaggle_dir), "--out", str(tmp_path / "run"), "--dry-run"]
    plan = CliRunner().invoke(cli, args)
    assert plan.exit_code == 0, plan.output
    made = json.loads(plan.output)["train"]
    library = TrainConfig(data=str(kaggle_dir), out=str(tmp_path / "run")).to_dict()
    assert made == library and made["folds"] == 5 and made["export"] == "auto"


def test_every_command_is_made_from_a_config_and_takes_a_config_file():
    from tests.test_cli import _commands

    for path, command in _commands(cli):
        if isinstance(command, click.Group):
            continue
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        assert isinstance(command, StageCommand), path
        assert "--config" in names, path
