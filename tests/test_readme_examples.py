"""scripts/readme_examples.py: marked console blocks are run again and their output replaced."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location(
    "readme_examples", ROOT / "scripts/readme_examples.py"
)
readme_examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_examples)


def test_marked_blocks_are_rerun_and_others_kept():
    text = [
        "intro",
        "<!-- example: setup echo unshown -->",
        "```console",
        "$ echo fresh; echo also >&2",
        "stale output",
        "$ printf 'a\\nb\\n' \\",
        "    | sort -r",
        "old",
        "```",
        "```console",
        "$ echo not run",
        "quoted output",
        "```",
    ]
    assert readme_examples.regenerate(text, log=lambda _: None) == [
        "intro",
        "<!-- example: setup echo unshown -->",
        "```console",
        "$ echo fresh; echo also >&2",
        "fresh",
        "also",
        "$ printf 'a\\nb\\n' \\",
        "    | sort -r",
        "b",
        "a",
        "```",
        "```console",
        "$ echo not run",
        "quoted output",
        "```",
    ]


def test_the_readme_marks_its_demo_examples():
    readme = (ROOT / "README.md").read_text().splitlines()
    marked = [i for i, line in enumerate(readme) if readme_examples.MARKER.match(line)]
    assert len(marked) >= 10
    for i in marked:
        assert readme[i + 1] == "```console"
        run = [line for line in readme[i + 2 : readme.index("```", i + 2)] if line[:2] == "$ "]
        # Runnable by a newcomer after `make demo`: no run that only the authors have.
        assert run and not any("runs/" in line for line in run), run


def test_the_readme_is_short_and_shows_every_command():
    from cxr_fast.cli import cli

    readme = (ROOT / "README.md").read_text().splitlines()
    # Read in five minutes (issue 27): the option reference is each command's --help.
    assert len(readme) <= 250
    shown = {line.split()[2] for line in readme if line.startswith("$ cxr-fast ")}
    assert set(cli.commands) <= shown, set(cli.commands) - shown
