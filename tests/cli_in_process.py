"""Run the console entry point in this process, as a user's shell would: exit code and output."""

import pytest

from cxr_fast import cli


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``cxr-fast ARGS`` through ``cli.main`` (its error handling and exit codes included):
    (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["cxr-fast", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line(code: int, err: str, *needles: str) -> str:
    """A user mistake as the CLI reports it: exit 2 and one ``cxr-fast: error:`` line holding
    every needle, no traceback; returns that line."""
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxr-fast: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
