"""The click side of the options declared on the stage configs (:mod:`cxr_fast.options`): one
click option per field, ``--help`` grouped by section, and ``--config FILE`` merged under what
the command line gives."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from cxr_fast.errors import UserInputError
from cxr_fast.options import (
    SECTIONS,
    OptionSpec,
    base_type,
    from_text,
    is_path,
    option_name,
    read_config_file,
    spec_of,
)


def _click_type(spec: OptionSpec, kind: Any) -> Any:
    if spec.choices is not None:
        return click.Choice(spec.choices)
    if typing.get_origin(kind) is tuple and spec.multiple:
        return _click_type(spec, typing.get_args(kind)[0])
    if kind is Path or (kind is str and is_path(spec)):
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


def flag(decl: str, help: str, section: str = "run", name: str | None = None) -> Callable:
    """An on/off option of the command itself, which no stage config holds (--dry-run)."""
    names = [decl, name] if name else [decl]
    return click.option(*names, is_flag=True, cls=SectionOption, section=section, help=help)


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
    kind = base_type(cls, f)
    if spec.argument:
        nargs = -1 if typing.get_origin(kind) is tuple else 1
        inner = typing.get_args(kind)[0] if nargs == -1 else kind
        typ = _click_type(spec, inner)
        return click.Argument([f.name], type=typ, nargs=nargs, required=not spec.optional)
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


_FROM_FILE = "cxr_fast.cli_options.from_file"


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
            built[name] = from_text(cls, f, value) if name not in extra else value
    return cls(**built)


def config_from_cli(cls: type, values: dict, **extra: Any) -> Any:
    """Build ``cls`` from a command's values, a ``--config`` file's and ``extra``."""
    return build_config(cls, merged_values(values), **extra)
