"""Settings from outside the command line: ``PROBE_*`` variables and a ``[tool.probe]`` table.

Every option of every command (and ``list``/``dump``'s MODEL) is read, in this order, from

1. the command line;
2. an environment variable: ``PROBE_<COMMAND>_<OPTION>`` (``PROBE_DUMP_SEED``), then
   ``PROBE_<OPTION>`` (``PROBE_SEED``);
3. the config file: ``[tool.probe.<command>]``, then ``[tool.probe]``, of the nearest
   ``probe.toml`` (same keys at its top level) or ``pyproject.toml`` holding a ``[tool.probe]``
   table, from the current directory upwards;
4. the option's default.

That is Click's own order once the file is loaded into the context's ``default_map``; this module
finds and checks the file, names the variables, and says where each setting came from (``probe
config``). ``--unsafe`` is taken from the command line only. Only the standard library and Click
are imported here, so ``probe --help`` stays fast.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from probe_cli.core.errors import UsageProblem

ENV_PREFIX = "PROBE"
PROBE_TOML = "probe.toml"
PYPROJECT = "pyproject.toml"
#: Never read from a file or the environment: a config file must not be able to make a model run code.
COMMAND_LINE_ONLY = frozenset({"unsafe"})
UNSAFE_REASON = "--unsafe lets a model file run code, so probe takes it only from the command line"
#: Options that mean a different thing per command (dump's archive, plot's PNG): set per command only.
PER_COMMAND_ONLY = frozenset({"output"})
#: The one argument that can be set: the project's model. Archives are always named on the command line.
SETTABLE_ARGUMENTS = frozenset({"model"})
#: Click's own eager options: nothing to set.
NOT_SETTINGS = frozenset({"help", "version"})
#: Set in ``ctx.meta`` while ``probe config`` parses a command's arguments without running it.
DESCRIBING = "probe.config.describing"
#: The :class:`Settings` of this invocation, in ``ctx.meta``.
SETTINGS = "probe.config.settings"

MISSING_MODEL_HINT = "Give it on the command line, in PROBE_MODEL, or as model in [tool.probe] of pyproject.toml"

COMMAND_LINE = "command line"
ENV = "env"
CONFIG = "config"
DEFAULT = "default"


class ConfigError(UsageProblem):
    """A config file or ``PROBE_*`` variable probe cannot use: one line, exit code 2."""


# ------------------------------------------------------------------ names of settings


def key_of(param: click.Parameter) -> str | None:
    """The config key of a parameter (its long option name, ``model`` for MODEL), or None when it has none."""
    if param.name is None or param.name in NOT_SETTINGS:
        return None
    if isinstance(param, click.Argument):
        return param.name if param.name in SETTABLE_ARGUMENTS else None
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return longs[0][2:] if longs else None


def normalize(key: str) -> str:
    """``custom_objects`` and ``custom-objects`` are one key."""
    return key.replace("_", "-")


def env_names(command: str | None, key: str) -> list[str]:
    """The variables a setting is read from, most specific first."""
    stem = key.upper().replace("-", "_")
    names = [f"{ENV_PREFIX}_{command.upper()}_{stem}"] if command else []
    if command is None or key not in PER_COMMAND_ONLY:
        names.append(f"{ENV_PREFIX}_{stem}")
    return names


def settable(command: click.Command) -> dict[str, click.Parameter]:
    """The parameters of ``command`` a variable or the config file may set, by key."""
    found: dict[str, click.Parameter] = {}
    for param in command.params:
        key = key_of(param)
        if key is not None and key not in COMMAND_LINE_ONLY:
            found[key] = param
    return found


def install_envvars(name: str | None, command: click.Command) -> None:
    """Gives every settable parameter of a command (``name``) or of the group (None) its ``PROBE_*`` variables."""
    for key, param in settable(command).items():
        param.envvar = env_names(name, key)


def unsafe_variables(group: click.Group) -> list[str]:
    """The variables that would set ``--unsafe`` if probe read them."""
    names = env_names(None, "unsafe")
    for name, command in group.commands.items():
        if any(key_of(p) == "unsafe" for p in command.params):
            names.insert(0, env_names(name, "unsafe")[0])
    return names


def check_environment(group: click.Group, environ: Mapping[str, str] = os.environ) -> None:
    """Refuses ``PROBE_UNSAFE`` (and ``PROBE_DUMP_UNSAFE``, ...) rather than ignoring it silently."""
    for name in unsafe_variables(group):
        if environ.get(name):
            raise ConfigError(f"{name} is refused: {UNSAFE_REASON}", "pass --unsafe to the command instead")


# ------------------------------------------------------------------ the config file


@dataclass(frozen=True)
class ConfigFile:
    """The settings table of a config file: ``[tool.probe]`` of a pyproject.toml, or a probe.toml."""

    path: Path
    #: where the settings live in the file: ``("tool", "probe")``, or ``()`` for a probe.toml's top level
    table: tuple[str, ...]
    data: dict[str, Any]

    def label(self, command: str | None = None) -> str:
        """``/p/pyproject.toml [tool.probe.dump]``: where a setting came from."""
        parts = [*self.table, *([command] if command else [])]
        return f"{self.path} [{'.'.join(parts)}]" if parts else str(self.path)

    def where(self, key: str, command: str | None = None) -> str:
        """``/p/pyproject.toml: [tool.probe.dump] seed``: a key, for error messages."""
        parts = [*self.table, *([command] if command else [])]
        return f"{self.path}: [{'.'.join(parts)}] {key}" if parts else f"{self.path}: {key}"


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):  # imported here: ``probe --help`` reads no file
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOMLDecodeError, or bytes that are not UTF-8
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def find_config(start: Path) -> ConfigFile | None:
    """The nearest probe.toml, or pyproject.toml with a ``[tool.probe]`` table, from ``start`` upwards."""
    for directory in (start, *start.parents):
        for name in (PROBE_TOML, PYPROJECT):
            path = directory / name
            try:
                if not path.is_file():
                    continue
            except OSError:
                continue
            document = _read_toml(path)
            tool = document.get("tool")
            if isinstance(tool, dict) and "probe" in tool:
                table = tool["probe"]
                if not isinstance(table, dict):
                    raise ConfigError(f"{path}: [tool.probe] must be a table, not {_kind(table)}")
                return ConfigFile(path, ("tool", "probe"), table)
            if name == PROBE_TOML:
                return ConfigFile(path, (), document)
    return None


@dataclass(frozen=True)
class Settings:
    """What the config file sets, per command: Click's ``default_map`` and where each value came from."""

    file: ConfigFile | None = None
    #: command -> parameter name -> value
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: command -> parameter name -> ``/p/pyproject.toml [tool.probe.dump]``
    origins: dict[str, dict[str, str]] = field(default_factory=dict)


def load_settings(group: click.Group, cwd: Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Checks the environment, then finds and checks the config file; raises :class:`ConfigError`."""
    check_environment(group, environ)
    if cwd is None:
        try:
            cwd = Path.cwd()
        except OSError:  # the current directory was removed
            return Settings()
    found = find_config(cwd)
    return Settings() if found is None else parse_config(group, found)


def parse_config(group: click.Group, config: ConfigFile) -> Settings:
    """Checks every key and value of ``config`` against ``group``'s commands; relative paths become absolute."""
    commands = {name: settable(command) for name, command in group.commands.items()}
    everything = sorted({key for keys in commands.values() for key in keys} | set(commands))
    shared, tables = _split(config, _keys(config, config.data, None), commands)
    settings = Settings(config)
    for key, (raw, value) in shared.items():
        where = config.where(raw)
        _refuse_unsafe(key, where)
        users = [name for name, keys in commands.items() if key in keys]
        if not users:
            raise ConfigError(f"{where}: unknown key{_did_you_mean(key, everything)}")
        if key in PER_COMMAND_ONLY:
            tables_hint = " or ".join(f"[{'.'.join([*config.table, name])}]" for name in users)
            raise ConfigError(f"{where}: means a different file for each command; set it in {tables_hint}")
        for name in users:
            _set(settings, name, commands[name][key], value, config, where, config.label(), shared=True)
    for name, table in tables.items():
        for key, (raw, value) in _keys(config, table, name).items():
            where = config.where(raw, name)
            _refuse_unsafe(key, where)
            if key not in commands[name]:
                elsewhere = [other for other, keys in commands.items() if key in keys]
                why = f"not an option of probe {name}" + (
                    f" (it is one of probe {', '.join(elsewhere)})" if elsewhere else ""
                )
                known = sorted(commands[name])
                raise ConfigError(f"{where}: {why}{'' if elsewhere else _did_you_mean(key, known)}")
            _set(settings, name, commands[name][key], value, config, where, config.label(name), shared=False)
    return settings


def _keys(config: ConfigFile, table: Mapping[str, Any], command: str | None) -> dict[str, tuple[str, Any]]:
    """A table's keys normalized (``_`` -> ``-``), each with its spelling in the file."""
    keys: dict[str, tuple[str, Any]] = {}
    for raw, value in table.items():
        key = normalize(raw)
        if key in keys:
            raise ConfigError(f"{config.where(raw, command)}: given twice (as {keys[key][0]!r} and {raw!r})")
        keys[key] = (raw, value)
    return keys


def _split(
    config: ConfigFile, keys: dict[str, tuple[str, Any]], commands: Mapping[str, Any]
) -> tuple[dict[str, tuple[str, Any]], dict[str, dict[str, Any]]]:
    """The top level's settings, and its per-command tables."""
    shared: dict[str, tuple[str, Any]] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, (raw, value) in keys.items():
        if key in commands:
            if not isinstance(value, dict):
                raise ConfigError(f"{config.where(raw)}: must be a table of probe {key}'s settings, not {_kind(value)}")
            tables[key] = value
        else:
            shared[key] = (raw, value)
    return shared, tables


def _refuse_unsafe(key: str, where: str) -> None:
    if key in COMMAND_LINE_ONLY:
        raise ConfigError(f"{where}: refused: {UNSAFE_REASON}", "pass --unsafe to the command instead")


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _set(
    settings: Settings,
    command: str,
    param: click.Parameter,
    value: Any,
    config: ConfigFile,
    where: str,
    label: str,
    *,
    shared: bool,
) -> None:
    assert param.name is not None
    for_whom = f" (--{key_of(param)} of probe {command})" if shared and isinstance(param, click.Option) else ""
    converted = _convert(param, value, config.path.parent, where + for_whom)
    settings.defaults.setdefault(command, {})[param.name] = converted
    settings.origins.setdefault(command, {})[param.name] = label


# ------------------------------------------------------------------ values


#: TOML's kinds of value as Python types, bool before int (a bool is an int); anything else is a date or time.
_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"), (list, "an array"),
          (dict, "a table"))  # fmt: skip


def _kind(value: Any) -> str:
    return next((kind for python_type, kind in _KINDS if isinstance(value, python_type)), "a date or time")


def _expected(param: click.Parameter) -> tuple[type | tuple[type, ...], str]:
    """The TOML type a parameter's value must have, and its name for an error."""
    if (isinstance(param, click.Option) and param.is_flag) or isinstance(param.type, click.types.BoolParamType):
        return bool, "true or false"
    if isinstance(param.type, click.types.IntParamType):
        return int, "an integer"
    if isinstance(param.type, click.types.FloatParamType):
        return (int, float), "a number"
    accepted = getattr(param.type, "toml_types", None)  # e.g. --max-error: 0.05 or "probs/.*=0.05"
    if accepted is not None:
        return accepted
    return str, "a string"


def _convert(param: click.Parameter, value: Any, base: Path, where: str) -> Any:
    """``value`` checked against ``param``'s type; a list for a repeatable option (a lone value is one item)."""
    if isinstance(param, click.Option) and param.multiple:
        items = value if isinstance(value, list) else [value]
        return [_convert_one(param, item, base, where, repeatable=True) for item in items]
    return _convert_one(param, value, base, where, repeatable=False)


def _convert_one(param: click.Parameter, value: Any, base: Path, where: str, *, repeatable: bool) -> Any:
    want, name = _expected(param)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        expected = f"{name} or an array of them" if repeatable else name
        shown = json.dumps(value) if isinstance(value, (str, int, float, list)) else str(value)
        raise ConfigError(f"{where}: expected {expected}, got {_kind(value)} ({shown})")
    if isinstance(value, str) and isinstance(param.type, click.Path):
        value = str(base / value)
    elif isinstance(value, str) and key_of(param) == "input":
        value = _input_path(value, base)
    try:
        return param.type.convert(value, param, None)
    except click.BadParameter as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _input_path(text: str, base: Path) -> str:
    """``--input [NAME=]FILE`` with FILE relative to the config file's directory."""
    if Path(text).is_absolute() or (base / text).exists():
        return str(base / text)
    name, sep, path = text.partition("=")
    if sep and name and path and "/" not in name:
        return f"{name}={base / path}"
    return str(base / text)


# ------------------------------------------------------------------ where each setting came from


@dataclass(frozen=True)
class Setting:
    """One setting of a command as it would run: ``probe config``'s row."""

    key: str
    value: Any
    #: ``command line``, ``env``, ``config`` or ``default``
    source: str
    #: the variable or the file and table, for ``env`` and ``config``
    origin: str | None = None

    def document(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "from": self.origin}

    def where(self) -> str:
        """``env PROBE_SEED``, ``config /p/pyproject.toml [tool.probe]``, ``command line``, ``default``."""
        return self.source if self.origin is None else f"{self.source} {self.origin}"


def settings_of(ctx: click.Context) -> Settings:
    found = ctx.meta.get(SETTINGS)
    return found if isinstance(found, Settings) else Settings()


def env_origin(param: click.Parameter, environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable Click took ``param``'s value from: the first one set and not empty."""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    return next((name for name in names if environ.get(name)), None)


def origin_of(ctx: click.Context, param: click.Parameter) -> tuple[str, str | None]:
    """Where ``param``'s value in ``ctx`` came from: a source and, for a variable or the file, which."""
    assert param.name is not None
    source = ctx.get_parameter_source(param.name)
    if source is ParameterSource.ENVIRONMENT:
        return ENV, env_origin(param)
    if source is ParameterSource.DEFAULT_MAP:
        command = ctx.info_name or ""
        return CONFIG, settings_of(ctx).origins.get(command, {}).get(param.name, "the default map")
    if source in (ParameterSource.COMMANDLINE, ParameterSource.PROMPT):
        return COMMAND_LINE, None
    return DEFAULT, None


def _value(ctx: click.Context, param: click.Parameter, source: str) -> Any:
    """A parameter's value in ``ctx``, also for options that do not reach the command (-v, --debug)."""
    assert param.name is not None
    if param.name in ctx.params:
        return ctx.params[param.name]
    if source == COMMAND_LINE:
        return True  # only flags are kept from the command (-v, --debug)
    if source == ENV:
        return param.type_cast_value(ctx, param.value_from_envvar(ctx))
    if source == CONFIG:
        return ctx.lookup_default(param.name)
    return param.get_default(ctx)


def _plain(value: Any) -> Any:
    """A value as JSON has it: paths as strings, tuples as lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "nan": JSON has no such numbers
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def parse_only(command: click.Command) -> click.Command:
    """A copy of ``command`` that parses as it does but requires nothing and runs nothing.

    ``probe config diff`` has no archives to name, ``probe config plot`` no ``--tensor``: their
    settings are shown all the same.
    """
    params = []
    for param in command.params:
        clone = copy.copy(param)
        clone.required = False
        params.append(clone)
    return click.Command(command.name, params=params, context_settings=command.context_settings, add_help_option=False)


def describe(ctx: click.Context) -> list[Setting]:
    """Every setting of ``ctx``'s command (parsed, not run), with where its value came from."""
    rows = []
    for param in ctx.command.params:
        key = key_of(param)
        if key is None:
            continue
        source, origin = origin_of(ctx, param)
        rows.append(Setting(key, _plain(_value(ctx, param, source)), source, origin))
    return rows


def settings_document(command: str, settings: Settings, rows: list[Setting]) -> dict[str, Any]:
    """``probe config COMMAND --json``."""
    return {
        "command": command,
        "config_file": None if settings.file is None else str(settings.file.path),
        "settings": {row.key: row.document() for row in rows},
    }


def settings_lines(command: str, settings: Settings, rows: list[Setting]) -> list[str]:
    """``probe config COMMAND``: a plain table, one setting per line, values as TOML/JSON writes them."""
    where = "none found" if settings.file is None else settings.file.label()
    lines = [f"probe {command} settings (config file: {where}):"]
    cells = [(row.key, "-" if row.value is None else json.dumps(row.value), row.where()) for row in rows]
    widths = [max(len(c[i]) for c in [("setting", "value", "source"), *cells]) for i in range(2)]
    for key, value, source in [("setting", "value", "source"), *cells]:
        lines.append(f"  {key:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip())
    return lines


def implicit_arguments(ctx: click.Context) -> tuple[list[str], list[str]]:
    """The settings ``ctx``'s command took from variables or the config file, as options and arguments.

    Appended to the command an archive records, so running it again needs neither.
    """
    options: list[str] = []
    positional: list[str] = []
    for param in ctx.command.params:
        key = key_of(param)
        if key is None or param.name not in ctx.params or origin_of(ctx, param)[0] not in (ENV, CONFIG):
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            positional.append(os.fspath(value))
        elif isinstance(param, click.Option) and param.is_flag:
            options += [f"--{key}"] if value else []
        elif isinstance(param, click.Option) and param.multiple:
            for item in value:
                options += [f"--{key}", str(item)]
        elif value is not None:
            options += [f"--{key}", str(value)]
    return options, positional
