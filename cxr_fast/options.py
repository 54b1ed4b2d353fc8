"""Options declared once, on a stage's config dataclass, and everything made from them.

A field says ``option(default, help=..., section=..., min=..., choices=...)``; from that one
declaration come the range and choice checks every config runs (:func:`check_options`), the
click options of its command (:func:`config_options`, with ``--help`` grouped by section) and
the keys a ``--config FILE`` may set (:func:`config_from_cli`).

This module imports click and the standard library only: `cxr-fast --help` must not wait for
PyTorch to load.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

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
    if isinstance(value, (int, float)):
        return _range_problem(spec, value)
    return None


def _base_type(cls: type, f: dataclasses.Field) -> Any:
    """The field's type without ``| None``, resolved from its string annotation alone (other
    fields may name types imported for type checkers only)."""
    hint = f.type
    if isinstance(hint, str):
        hint = eval(hint, vars(sys.modules[cls.__module__]))
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return hint


def _is_path(spec: OptionSpec) -> bool:
    return spec.exists or not spec.file_okay or not spec.dir_okay


def _click_type(spec: OptionSpec, kind: Any) -> Any:
    if spec.choices is not None:
        return click.Choice(spec.choices)
    if typing.get_origin(kind) is tuple and spec.multiple:
        return _click_type(spec, typing.get_args(kind)[0])
    if kind is Path or (kind is str and _is_path(spec)):
        return click.Path(
            exists=spec.exists,
            dir_okay=spec.dir_okay,
            file_okay=spec.file_okay,
            path_type=kind,
        )
    if kind in (int, float) and (spec.min is not None or spec.max is not None):
        ranged = click.IntRange if kind is int else click.FloatRange
        bounds = dict(min_open=spec.min_open, max_open=spec.max_open)
        return ranged(spec.min, spec.max, **bounds)
    return kind if kind in (int, float) else str


class SectionOption(click.Option):
    """A click option that knows its ``--help`` section."""

    def __init__(self, *args: Any, section: str = "run", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class StageCommand(click.Command):
    """A command whose ``--help`` lists its options under one heading per section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                section = getattr(param, "section", "other")
                groups.setdefault(section, []).append(record)
        order = [s for s in SECTIONS if s in groups] + [s for s in groups if s not in SECTIONS]
        for section in order:
            with formatter.section(f"{section.capitalize()} options"):
                formatter.write_dl(groups[section])


def _default_for_click(f: dataclasses.Field, spec: OptionSpec) -> tuple[Any, Any]:
    """The click default and its --help text for a field."""
    default = None if f.default is MISSING else f.default
    if spec.default_text is not None:
        return (None if spec.parse else default), spec.default_text
    if spec.parse is not None:
        shown = ",".join(default) if isinstance(default, tuple) else default
        return None, (shown if shown else False)
    if spec.multiple and f.default_factory is not MISSING:
        default = f.default_factory()
    return default, default is not None and default != ()


def _param_for(cls: type, f: dataclasses.Field) -> click.Parameter:
    spec = spec_of(f)
    kind = _base_type(cls, f)
    if spec.argument:
        nargs = -1 if typing.get_origin(kind) is tuple else 1
        inner = typing.get_args(kind)[0] if nargs == -1 else kind
        typ = _click_type(spec, inner)
        return click.Argument([f.name], type=typ, nargs=nargs, required=True)
    default, shown = _default_for_click(f, spec)
    # A required option may come from --config FILE: config_from_cli asks for it after merging.
    common = dict(help=spec.help + ("  [required]" if spec.required else ""), section=spec.section)
    if kind is bool:
        decl = spec.flag or option_name(f)
        pair = "/" in decl
        return SectionOption(
            [decl, f.name], is_flag=True, default=bool(default), show_default=pair, **common
        )
    typ = str if spec.parse else _click_type(spec, kind)
    if isinstance(shown, str):
        common["help"] = f"{spec.help}  [default: {shown}]"
        shown = False
    return SectionOption(
        [option_name(f), f.name],
        type=typ,
        default=default,
        show_default=shown,
        metavar=spec.metavar,
        multiple=spec.multiple,
        **common,
    )


CONFIG_OPTION_HELP = (
    "A TOML or JSON file of option values (keys as the long options, - or _): they replace "
    "the defaults; options given on the command line still win."
)


def config_options(*classes: type) -> Callable:
    """Decorate a command with one option per declared field of ``classes`` and ``--config``."""

    def decorate(function: Callable) -> Callable:
        params = [
            _param_for(cls, f)
            for cls in classes
            for f in fields(cls)
            if spec_of(f) is not None and spec_of(f).cli
        ]
        params.append(
            SectionOption(
                ["--config", "config_file"],
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=None,
                help=CONFIG_OPTION_HELP,
                section="run",
            )
        )
        existing = getattr(function, "__click_params__", [])
        # click lists __click_params__ in reverse; the arguments keep their order first.
        function.__click_params__ = existing + list(reversed(params))
        return function

    return decorate


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


_FROM_FILE = "cxr_fast.options.from_file"


def given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given: on the command line, by the environment or in the
    ``--config`` file."""
    if name in ctx.meta.get(_FROM_FILE, ()):
        return True
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )


def _from_text(cls: type, f: dataclasses.Field, value: Any) -> Any:
    """A command-line or file value as the field's type (paths, parsed lists, tuples)."""
    spec, kind = spec_of(f), _base_type(cls, f)
    if value is None:
        return None
    if spec is not None and spec.parse is not None:
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        return spec.parse(value)
    if kind is Path:
        return Path(value)
    if kind is str and spec is not None and _is_path(spec):
        return str(Path(value))
    if isinstance(value, list):
        return tuple(value)
    return value


def _aliases(ctx: click.Context, names: set[str]) -> dict[str, str]:
    """Config-file keys -> the parameter ``names`` they set: by name or by long option."""
    aliases = {}
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name in names:
            aliases[param.name] = param.name
            for opt in param.opts:
                aliases[opt.split("/")[0].lstrip("-").replace("-", "_")] = param.name
    return aliases


def file_values(path: Path, aliases: dict[str, str]) -> dict:
    """The values a config file sets, by parameter name; an unknown key is one clear error."""
    values = {}
    for key, value in read_config_file(path).items():
        if key not in aliases:
            known = ", ".join(sorted(set(aliases.values())))
            raise UserInputError(f"{path}: unknown option {key!r} (known: {known})")
        values[aliases[key]] = value
    return values


def _cast(ctx: click.Context, param: click.Parameter, value: Any, path: Path) -> Any:
    """A config file's value as the command line would have read it (type, range, choices)."""
    if isinstance(value, list) and not param.multiple:
        value = ",".join(map(str, value))  # a list option such as --modalities CR,DX
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise UserInputError(f"{path}: {param.opts[0]}: {exc.format_message()}") from None


def merged_values(values: dict, ctx: click.Context | None = None) -> dict:
    """A command's ``values`` with a ``--config`` file's in place of the ones not given."""
    ctx = ctx or click.get_current_context()
    values = dict(values)
    path = values.pop("config_file", None)
    if path is not None:
        from_file = ctx.meta.setdefault(_FROM_FILE, set())
        params = {param.name: param for param in ctx.command.params}
        for name, value in file_values(path, _aliases(ctx, set(values))).items():
            if not given(ctx, name):
                values[name] = _cast(ctx, params[name], value, path)
                from_file.add(name)
    return values


def build_config(cls: type, values: dict, **extra: Any) -> Any:
    """``cls`` from the merged ``values`` of a command (those of its fields) and ``extra``."""
    by_name = {f.name: f for f in fields(cls)}
    chosen = {k: v for k, v in values.items() if k in by_name}
    for name, value in chosen.items():
        spec = spec_of(by_name[name])
        if value is None and spec is not None and spec.required:
            raise click.UsageError(f"Missing option '{option_name(by_name[name])}'.")
    built = {}
    for name, value in {**chosen, **extra}.items():
        f = by_name[name]
        if value is None and f.default is MISSING and f.default_factory is MISSING:
            built[name] = value
        elif value is None and spec_of(f) is not None and spec_of(f).parse is not None:
            continue  # not given: the field's own default
        else:
            built[name] = _from_text(cls, f, value) if name not in extra else value
    return cls(**built)


def config_from_cli(cls: type, values: dict, **extra: Any) -> Any:
    """Build ``cls`` from a command's values, a ``--config`` file's and ``extra``."""
    return build_config(cls, merged_values(values), **extra)
