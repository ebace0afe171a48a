"""FeatureFlags: layered sources resolved once, then a dict lookup per evaluation.

Sources, highest first: overrides passed in code, the ``REGISTRY_CORE_FLAGS`` environment
string, a TOML file, the stage default. Resolution runs when a source changes, never per call:
``is_enabled`` reads one precomputed dict. Dynamic sources (environment, file) are re-checked
at most once per ``refresh_interval`` seconds (a stat of the file and a read of one environment
variable), so a file edited on disk is picked up without a restart.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import FlagConfigError, FlagError, InvalidArgumentError, InvalidTypeError
from ._catalogue import CATALOGUE, Flag, Stage
from ._sources import (
    ENV_FILE_VAR,
    ENV_VAR,
    FileSource,
    Value,
    find_pyproject,
    parse_env,
    parse_mapping,
    unknown_flag,
)
from ._targeting import TargetingRule

__all__ = [
    "FeatureFlags",
    "FlagReloadWarning",
    "FlagState",
    "default_flags",
    "resolve_flags",
    "set_default_flags",
]

_monotonic = time.monotonic
_INF = float("inf")
PathLike = Union[str, "os.PathLike[str]"]


class FlagReloadWarning(UserWarning):
    """A changed flag source could not be read; the previous values stay in force."""


@dataclass(frozen=True)
class FlagState:
    """What :meth:`FeatureFlags.describe` reports for one flag."""

    name: str
    stage: Stage
    component: str
    description: str
    default: bool
    value: bool | TargetingRule  # a bool, or a rule decided per context
    source: str  # "override", "env REGISTRY_CORE_FLAGS", "file ...", "default (beta)"

    @property
    def targeted(self) -> bool:
        return isinstance(self.value, TargetingRule)

    def __str__(self) -> str:
        value = ("on" if self.value else "off") if isinstance(self.value, bool) else self.value
        return f"{self.name} [{self.stage}] = {value} (from {self.source})"


class FeatureFlags:
    """The feature flags in force, evaluated with :meth:`is_enabled`.

    ``FeatureFlags(overrides)`` is hermetic: stage defaults, then only the sources passed
    (``config`` file, ``environ`` mapping holding ``REGISTRY_CORE_FLAGS``), then ``overrides``.
    :meth:`load` reads the process's environment and the host project's pyproject.toml.
    """

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        config: PathLike | FileSource | None = None,
        environ: Mapping[str, str] | None = None,
        catalogue: Mapping[str, Flag] = CATALOGUE,
        refresh_interval: float = 1.0,
    ) -> None:
        if not isinstance(refresh_interval, (int, float)) or refresh_interval < 0:
            raise InvalidArgumentError(
                f"refresh_interval must be a number of seconds >= 0, got {refresh_interval!r}"
            )
        if overrides is not None and not isinstance(overrides, Mapping):
            raise InvalidTypeError(
                f"overrides must be a mapping of flag name -> value, not {type(overrides).__name__}"
            )
        self._catalogue = catalogue
        self._overrides_in: dict[str, Any] = dict(overrides or {})
        self._overrides = parse_mapping(self._overrides_in, catalogue, "override")
        if config is not None and not isinstance(config, FileSource):
            config = FileSource(config)
        self._file: FileSource | None = config
        self._environ = environ
        self._interval = float(refresh_interval)
        self._lock = threading.Lock()
        self.reload_error: FlagError | None = None
        self._env_text: str | None = None
        self._env_values: dict[str, Value] = {}
        self._file_sig: tuple[int, int, int] | None = None
        self._file_values: dict[str, Value] = {}
        self._values: dict[str, Value] = {}
        self._snapshot: tuple[dict[str, Value], dict[str, str]] = ({}, {})
        self._read_env()
        self._read_file()
        self._resolve()
        self._dynamic = self._file is not None or self._environ is not None
        self._next_check = _monotonic() + self._interval if self._dynamic else _INF

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        config: PathLike | None = None,
        environ: Mapping[str, str] | None = None,
        discover: bool = True,
        start: PathLike | None = None,
        catalogue: Mapping[str, Flag] = CATALOGUE,
        refresh_interval: float = 1.0,
    ) -> FeatureFlags:
        """Defaults + config file + environment (+ ``overrides``), as a deployment sets them.

        The file is ``config``, else ``$REGISTRY_CORE_FLAGS_FILE``, else (``discover``) the
        nearest pyproject.toml from ``start`` (default: cwd) up, read from
        ``[tool.registry-core.flags]``.
        """
        env = os.environ if environ is None else environ
        source: FileSource | None = None
        if config is None:
            config = env.get(ENV_FILE_VAR) or None
        if config is not None:
            source = FileSource(config)
            if source.signature() is None:
                raise FlagConfigError(f"{source.label}: file does not exist")
        elif discover:
            found = find_pyproject(Path(start) if start is not None else None)
            if found is not None:
                source = FileSource(found, discovered=True)
        return cls(
            overrides,
            config=source,
            environ=env,
            catalogue=catalogue,
            refresh_interval=refresh_interval,
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> FeatureFlags:
        """A new FeatureFlags on the same sources with ``overrides`` added on top."""
        if not isinstance(overrides, Mapping):
            raise InvalidTypeError(
                f"overrides must be a mapping of flag name -> value, not {type(overrides).__name__}"
            )
        merged = {**self._overrides_in, **overrides}
        return type(self)(
            merged,
            config=self._file,
            environ=self._environ,
            catalogue=self._catalogue,
            refresh_interval=self._interval,
        )

    # -- evaluation (hot path) -------------------------------------------------------------

    def is_enabled(self, name: str, context: Mapping[str, Any] | None = None) -> bool:
        """Whether flag ``name`` is on, for ``context`` ({"tenant", "key", "attributes"})."""
        if self._dynamic and _monotonic() >= self._next_check:
            self._maybe_reload()
        try:
            value = self._values[name]
        except (KeyError, TypeError):
            raise unknown_flag(name, self._catalogue) from None
        if value is True or value is False:
            return value
        return value.evaluate(name, context)

    def evaluate_details(
        self, name: str, context: Mapping[str, Any] | None = None
    ) -> tuple[bool, FlagState]:
        """:meth:`is_enabled` plus the :class:`FlagState` that decided it, from one snapshot."""
        if self._dynamic and _monotonic() >= self._next_check:
            self._maybe_reload()
        if not isinstance(name, str) or name not in self._catalogue:
            raise unknown_flag(name, self._catalogue)
        snapshot = self._snapshot
        value = snapshot[0][name]
        if not isinstance(value, bool):
            value = value.evaluate(name, context)
        return value, self._state(name, snapshot)

    # -- inspection --------------------------------------------------------------------------

    def describe(self) -> dict[str, FlagState]:
        """Every flag: stage, value, and the source that decided it (one consistent snapshot)."""
        if self._dynamic:
            self._maybe_reload()
        snapshot = self._snapshot
        return {name: self._state(name, snapshot) for name in self._catalogue}

    def describe_one(self, name: str) -> FlagState:
        """:meth:`describe` for one flag (UnknownFlagError for a name not in the catalogue)."""
        if not isinstance(name, str) or name not in self._catalogue:
            raise unknown_flag(name, self._catalogue)
        return self._state(name, self._snapshot)

    def _state(self, name: str, snapshot: tuple[dict[str, Value], dict[str, str]]) -> FlagState:
        flag = self._catalogue[name]
        values, sources = snapshot
        return FlagState(
            name=name,
            stage=flag.stage,
            component=flag.component,
            description=flag.description,
            default=flag.default,
            value=values[name],
            source=sources[name],
        )

    @property
    def catalogue(self) -> Mapping[str, Flag]:
        return self._catalogue

    @property
    def config_path(self) -> Path | None:
        """The TOML file this instance watches, if any."""
        return self._file.path if self._file is not None else None

    def refresh(self) -> bool:
        """Re-check the dynamic sources now; True when something changed."""
        if not self._dynamic:
            return False
        self._next_check = 0.0
        before = self._values
        self._maybe_reload()
        return self._values is not before

    def __repr__(self) -> str:
        on = sorted(n for n, v in self._values.items() if v is True)
        return f"<FeatureFlags on={on} file={self.config_path}>"

    # -- sources -----------------------------------------------------------------------------

    def _read_env(self) -> bool:
        if self._environ is None:
            return False
        text = self._environ.get(ENV_VAR, "")
        if not isinstance(text, str):
            raise FlagConfigError(f"{ENV_VAR}: must be a string, got {type(text).__name__}")
        if text == self._env_text:
            return False
        self._env_values = _guarded(
            parse_env, f"env {ENV_VAR}", text, self._catalogue, f"env {ENV_VAR}"
        )
        self._env_text = text
        return True

    def _read_file(self) -> bool:
        if self._file is None:
            return False
        sig = self._file.signature()
        if sig == self._file_sig and sig is not None:
            return False
        if sig is None:
            if self._file.discovered and self._file_sig is None:
                return False  # discovered pyproject that vanished before the first read
            gone = "was removed" if self._file_sig is not None else "does not exist"
            raise FlagConfigError(f"{self._file.label}: file {gone}")
        self._file_values = _guarded(self._file.read, self._file.label, self._catalogue)
        self._file_sig = sig
        return True

    def _resolve(self) -> None:
        env_label = f"env {ENV_VAR}"
        file_label = self._file.label if self._file is not None else ""
        values: dict[str, Value] = {}
        sources: dict[str, str] = {}
        for name, flag in self._catalogue.items():
            for label, layer in (
                ("override", self._overrides),
                (env_label, self._env_values),
                (file_label, self._file_values),
            ):
                if name in layer:
                    values[name], sources[name] = layer[name], label
                    if flag.stage is Stage.DEPRECATED:
                        warnings.warn(
                            f"feature flag {name} is deprecated and will be removed; set in "
                            f"{label}",
                            DeprecationWarning,
                            stacklevel=4,
                        )
                    break
            else:
                values[name], sources[name] = flag.default, f"default ({flag.stage})"
        # One reference swap each: readers see the old or the new version, never a mix.
        self._snapshot = (values, sources)
        self._values = values

    def _maybe_reload(self) -> None:
        with self._lock:
            now = _monotonic()
            if now < self._next_check:
                return
            self._next_check = now + self._interval
            changed = False
            errors: list[FlagError] = []
            for read in (self._read_env, self._read_file):  # one bad source spoils not the other
                try:
                    changed = read() or changed
                except FlagError as exc:
                    errors.append(exc)
                except Exception as exc:  # never out of is_enabled: keep the last good values
                    errors.append(FlagConfigError(f"flag source unreadable: {exc!r}"))
            if changed:
                self._resolve()
            self.reload_error = errors[0] if errors else None
            for err in errors:
                warnings.warn(
                    f"{err} (keeping its previous flag values until it is fixed)",
                    FlagReloadWarning,
                    stacklevel=4,
                )


# -- process-wide instance ------------------------------------------------------------------------

_default: FeatureFlags | None = None  # set only by set_default_flags()
_catalogue_defaults: FeatureFlags | None = None
_default_lock = threading.Lock()


def default_flags() -> FeatureFlags:
    """The flags components use when given none: what the host passed to
    :func:`set_default_flags`, else the catalogue's stage defaults.

    Nothing is read implicitly: no environment variable and no ``pyproject.toml``. A process
    that wants the deployment's sources calls ``set_default_flags(FeatureFlags.load())`` where
    it starts (the registry-core CLI does).
    """
    flags = _default
    if flags is not None:
        return flags
    global _catalogue_defaults
    hermetic = _catalogue_defaults
    if hermetic is None:
        with _default_lock:
            hermetic = _catalogue_defaults
            if hermetic is None:
                hermetic = _catalogue_defaults = FeatureFlags()
    return hermetic


def set_default_flags(flags: FeatureFlags | None) -> None:
    """Make ``flags`` what components without explicit flags use (None: catalogue defaults)."""
    if flags is not None and not isinstance(flags, FeatureFlags):
        raise InvalidTypeError(f"expected FeatureFlags or None, got {type(flags).__name__}")
    global _default
    with _default_lock:
        _default = flags


def flag_enabled(flags: FeatureFlags | None, name: str) -> bool:
    """For components: whether ``name`` is on in ``flags`` (:func:`default_flags` if None)."""
    return resolve_flags(flags).is_enabled(name)


def resolve_flags(flags: FeatureFlags | None) -> FeatureFlags:
    """For components: ``flags`` if given, else :func:`default_flags`; type-checked."""
    if flags is None:
        return default_flags()
    if not isinstance(flags, FeatureFlags):
        raise InvalidTypeError(
            f"flags must be a registry_core.flags.FeatureFlags or None, got {type(flags).__name__}"
        )
    return flags


def _guarded(parse: Callable[..., dict[str, Value]], label: str, *args: Any) -> dict[str, Value]:
    """Run a source parser; anything but a FlagError it lets out becomes a FlagConfigError
    naming the source (a parser bug must not escape from ``is_enabled`` on a reload)."""
    try:
        return parse(*args)
    except FlagError:
        raise
    except (Exception, RecursionError) as exc:
        raise FlagConfigError(
            f"{label}: unreadable flag source ({type(exc).__name__}: {exc})"
        ) from None
