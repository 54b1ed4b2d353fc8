"""One way to say something: library code writes through ``cxr_fast.messages``."""

from __future__ import annotations

import ast
from pathlib import Path

import cxr_fast
from cxr_fast.messages import silent, to_stderr, to_stdout

PACKAGE = Path(cxr_fast.__file__).parent
# Third-party loggers tamed, not our messages: waitress's queue warning, ONNX tooling.
LOGGING_ALLOWED = {"serve/server.py", "export/onnx.py"}


def test_each_writer_puts_one_line_where_it_says(capsys):
    to_stdout("result")
    to_stderr("warning")
    silent("nothing")
    assert capsys.readouterr() == ("result\n", "warning\n")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def test_library_code_neither_prints_nor_logs():
    printing, logging_ = [], []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (
                name not in {"messages.py", "cli.py"}
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                printing.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Import | ast.ImportFrom) and name not in LOGGING_ALLOWED:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if "logging" in names or getattr(node, "module", None) == "logging":
                    logging_.append(f"{name}:{node.lineno}")
    assert printing == [] and logging_ == [], (printing, logging_)


def test_no_two_modules_share_a_name():
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        stem = relative.parent.name if path.name == "__init__.py" else path.stem
        if not stem:
            continue  # the top package itself
        where = relative.parent.as_posix() if path.name == "__init__.py" else relative.as_posix()
        if stem in seen:
            clashes.append((seen[stem], where))
        seen[stem] = where
    assert clashes == []
