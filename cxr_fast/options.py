"""Options declared once, on a stage's config dataclass, and everything made from them.

A field says ``option(default, help=..., section=..., min=..., choices=...)``; from that one
declaration come the range and choice checks every config runs (:func:`check_options`), the
click options of its command (:func:`config_options`, with ``--help`` grouped by section) and
the keys a ``--config FILE`` may set (:func:`config_from_cli`).

The click side (options, ``--help`` sections, ``--config`` merging) is
:mod:`cxr_fast.cli_options`. This module imports the standard library only: `cxr-fast --help`
must not wait for PyTorch to load.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from cxr_fast.errors import UserInputError

# The order `--help` lists its sections in; options of no known section come last.
SECTIONS = ("data", "model", "recipe", "run", "output")
_KEY = "cxr_fast.option"


@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line and what values it accepts."""

    help: str
    section: str = "run"
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # "--tta/--no-tta"; None: a bool field is a plain --name flag
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # command-line text -> field value
    default_text: str | None = None  # what --help shows as the default, when not the value
    name: str | None = None  # the option's name, when not --field-name
    argument: bool = False  # a positional argument (nargs -1 for a tuple field)
    optional: bool = False  # an argument that may be left out (score's ARCHIVE, with --dicomweb)
    exists: bool = False  # a path that must exist
    dir_okay: bool = True
    file_okay: bool = True
    required: bool = False  # required on the command line (the field may still have a default)
    multiple: bool = False  # the option repeats (a tuple field)
    cli: bool = True  # False: a field only the library sets


def option(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **spec: Any):
    """A dataclass field whose command-line option is described by ``spec`` (see OptionSpec)."""
    meta = {_KEY: OptionSpec(**spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def spec_of(f: dataclasses.Field) -> OptionSpec | None:
    """The option a field declares, or None for a plain field."""
    return f.metadata.get(_KEY)


def option_name(f: dataclasses.Field) -> str:
    """``--image-size`` for the field ``image_size`` (or the name the spec gives)."""
    spec = spec_of(f)
    return (spec and spec.name) or "--" + f.name.replace("_", "-")


def _range_problem(spec: OptionSpec, value: float) -> str | None:
    low = spec.min is not None and (value <= spec.min if spec.min_open else value < spec.min)
    high = spec.max is not None and (value >= spec.max if spec.max_open else value > spec.max)
    if not (low or high):
        return None
    if spec.max is None:
        return f"must be {'>' if spec.min_open else '>='} {spec.min:g}"
    if spec.min is None:
        return f"must be {'<' if spec.max_open else '<='} {spec.max:g}"
    left, right = "(" if spec.min_open else "[", ")" if spec.max_open else "]"
    return f"must be in {left}{spec.min:g}, {spec.max:g}{right}"


def check_options(config: Any) -> None:
    """Check every declared range and choice of ``config``: the first problem as one line."""
    for f in fields(config):
        spec, value = spec_of(f), getattr(config, f.name)
        values = value if isinstance(value, tuple) and spec and spec.multiple else (value,)
        for one in values:
            problem = spec and _problem(spec, one)
            if problem:
                raise UserInputError(f"{option_name(f)} {problem}, got {one!r}")


def _problem(spec: OptionSpec, value: Any) -> str | None:
    """What is wrong with one value of an option, or None."""
    if value is None or isinstance(value, bool):
        return None
    if spec.choices is not None and isinstance(value, str) and value not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}"
    if isinstance(value, float) and math.isnan(value):
        return "must be a number"  # NaN passes every comparison, so no range would catch it
    if isinstance(value, (int, float)):
        return _range_problem(spec, value)
    return None


def base_type(cls: type, f: dataclasses.Field) -> Any:
    """The field's type without ``| None``, resolved from its string annotation alone (other
    fields may name types imported for type checkers only)."""
    hint = f.type
    if isinstance(hint, str):
        hint = eval(hint, vars(sys.modules[cls.__module__]))
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return hint


def is_path(spec: OptionSpec) -> bool:
    return spec.exists or not spec.file_okay or not spec.dir_okay


def read_config_file(path: Path) -> dict:
    """The key/value pairs of a TOML or JSON file (keys with - or _), one line on an error."""
    text = Path(path).read_text()
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserInputError(f"{path} is not a valid config file: {exc}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path} must hold a table of option values")
    if isinstance(data.get("params"), dict):
        # A best.json of `cxr-fast tune`: its searched options. The trial budget beside them
        # (screened_with) sized the screening; applying it would not train the recipe.
        data = data["params"]
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def from_text(cls: type, f: dataclasses.Field, value: Any) -> Any:
    """A command-line or file value as the field's type (paths, parsed lists, tuples)."""
    spec, kind = spec_of(f), base_type(cls, f)
    if value is None:
        return None
    if spec is not None and spec.parse is not None:
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        return spec.parse(value)
    if kind is Path:
        return Path(value)
    if kind is str and spec is not None and is_path(spec):
        return str(Path(value))
    if isinstance(value, list):
        return tuple(value)
    return value
