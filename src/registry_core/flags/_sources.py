"""Flag sources: values passed in code, the environment string, and TOML files.

Each source parses strictly into ``{flag name: bool | TargetingRule}``; any problem raises
:class:`FlagConfigError` (or :class:`UnknownFlagError` for a misspelt name) naming the source.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FlagConfigError, UnknownFlagError
from ._catalogue import Flag
from ._targeting import TargetingRule, parse_percent, rule_from_table

__all__ = [
    "ENV_FILE_VAR",
    "ENV_VAR",
    "FileSource",
    "find_pyproject",
    "parse_env",
    "parse_mapping",
    "unknown_flag",
]

ENV_VAR = "REGISTRY_CORE_FLAGS"
ENV_FILE_VAR = "REGISTRY_CORE_FLAGS_FILE"
PYPROJECT_TABLE = "[tool.registry-core.flags]"
#: Largest flags file read (a pyproject.toml included); larger ones are a FlagConfigError.
MAX_FILE_BYTES = 4 << 20

Value = bool | TargetingRule

_TRUE = frozenset({"on", "true", "1", "yes", "enabled"})
_FALSE = frozenset({"off", "false", "0", "no", "disabled"})


def unknown_flag(name: object, catalogue: Mapping[str, Flag], source: str = "") -> UnknownFlagError:
    """The error for a name not in the catalogue, naming the closest known flag."""
    text = str(name)
    names = list(catalogue)
    near = difflib.get_close_matches(text.upper(), names, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else f"; known flags: {', '.join(names)}"
    where = f"{source}: " if source else ""
    return UnknownFlagError(f"{where}unknown feature flag {text!r}{hint}")


def _check_name(name: Any, catalogue: Mapping[str, Flag], source: str) -> str:
    if not isinstance(name, str) or name not in catalogue:
        raise unknown_flag(name, catalogue, source)
    return name


def parse_word(text: str, *, source: str, flag: str) -> Value:
    """``on/off/true/false/1/0/yes/no`` or ``N%`` (a rollout by key)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    if word.endswith("%"):
        return TargetingRule(rollout=parse_percent(word, source=source, flag=flag))
    raise FlagConfigError(
        f"{source}: {flag}: value {text!r} is not one of on/off/true/false/1/0/yes/no or a "
        "percentage such as '25%'"
    )


def parse_value(value: Any, *, source: str, flag: str) -> Value:
    """One flag's value from code or TOML: a bool, a word, or a rule table."""
    if isinstance(value, bool):
        return value
    if isinstance(value, TargetingRule):
        return value
    if isinstance(value, str):
        return parse_word(value, source=source, flag=flag)
    if isinstance(value, Mapping):
        return rule_from_table(value, source=source, flag=flag)
    raise FlagConfigError(
        f"{source}: {flag}: value {value!r} ({type(value).__name__}) is not true/false, "
        "a string such as 'on' or '25%', or a rule table"
    )


def parse_mapping(
    values: Mapping[str, Any], catalogue: Mapping[str, Flag], source: str
) -> dict[str, Value]:
    """Parse ``{name: value}`` from code or a TOML table."""
    if not isinstance(values, Mapping):
        raise FlagConfigError(f"{source}: flags must be a mapping of name -> value")
    return {
        _check_name(name, catalogue, source): parse_value(value, source=source, flag=name)
        for name, value in values.items()
    }


def parse_env(text: str, catalogue: Mapping[str, Flag], source: str = ENV_VAR) -> dict[str, Value]:
    """Parse ``"QUIC_TRANSPORT=on, BROTLI_COMPRESSION=off, CONNECTION_COALESCE=25%"``.

    Empty items (a trailing comma) are allowed; an item without ``=``, an empty name or value,
    an unknown name and a name given twice are errors.
    """
    out: dict[str, Value] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, word = item.partition("=")
        name, word = name.strip(), word.strip()
        if not sep or not name or not word:
            raise FlagConfigError(
                f"{source}: malformed item {item!r}; expected NAME=VALUE, e.g. "
                "'QUIC_TRANSPORT=on,BROTLI_COMPRESSION=off,CONNECTION_COALESCE=25%'"
            )
        _check_name(name, catalogue, source)
        if name in out:
            raise FlagConfigError(f"{source}: flag {name!r} is given twice")
        out[name] = parse_word(word, source=source, flag=name)
    return out


# -- TOML files --------------------------------------------------------------------------------


def _toml_loads() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    try:
        tomli = importlib.import_module("tomli")
    except ImportError:
        return None
    return tomli.loads


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (default: cwd) up to the root."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


class FileSource:
    """A TOML file of flags, re-read when its (mtime, size, inode) signature changes.

    A file named ``pyproject.toml`` is read from ``[tool.registry-core.flags]`` (absent table:
    no flags); any other file must hold a ``[flags]`` table.
    """

    def __init__(self, path: str | os.PathLike[str], *, discovered: bool = False) -> None:
        self.path = Path(path)
        self.discovered = discovered
        self.is_pyproject = self.path.name == "pyproject.toml"
        table = PYPROJECT_TABLE if self.is_pyproject else "[flags]"
        self.label = f"file {self.path} {table}"

    def signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def read(self, catalogue: Mapping[str, Flag]) -> dict[str, Value]:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise FlagConfigError(f"{self.label}: cannot read: {exc.strerror or exc}") from None
        if len(data) > MAX_FILE_BYTES:
            raise FlagConfigError(
                f"{self.label}: file is larger than {MAX_FILE_BYTES} bytes; a flags file is "
                "a few lines (put the flags in a file of their own with config=)"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlagConfigError(f"{self.label}: not UTF-8 text ({exc})") from None
        loads = _toml_loads()
        if loads is None:
            if self.is_pyproject and "registry-core" not in text:
                return {}
            raise FlagConfigError(
                f"{self.label}: reading TOML needs Python 3.11+ (tomllib) or the 'tomli' "
                "package on Python 3.9/3.10: pip install tomli"
            )
        try:
            doc = loads(text)
        except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
            raise FlagConfigError(f"{self.label}: invalid TOML: {exc}") from None
        except RecursionError:  # the parser recurses once per nesting level
            raise FlagConfigError(
                f"{self.label}: arrays or tables are nested too deeply to be a flags file"
            ) from None
        if self.is_pyproject:
            table: Any = doc
            for part in ("tool", "registry-core"):
                table = table.get(part)
                if table is None:
                    return {}
                if not isinstance(table, Mapping):
                    raise FlagConfigError(
                        f"{self.label}: '{part}' must be a table, not {type(table).__name__}"
                    )
            table = table.get("flags")
            if table is None:
                return {}
        else:
            table = doc.get("flags")
            if table is None:
                raise FlagConfigError(
                    f"{self.label}: no [flags] table; write e.g. [flags] QUIC_TRANSPORT = true"
                )
        if not isinstance(table, Mapping):
            raise FlagConfigError(f"{self.label}: the flags entry must be a table")
        return parse_mapping(table, catalogue, self.label)
