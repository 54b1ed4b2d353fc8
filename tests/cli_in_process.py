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
