"""Targeting: rules that decide a flag per evaluation context, and percentage rollouts.

A context is a mapping with up to three keys: ``tenant`` (str), ``key`` (str: the stable id a
rollout sticks to, e.g. a client or user id) and ``attributes`` (a mapping of name -> value).
A rule is evaluated in this order; the first step that decides wins:

1. ``enabled = false``: off for everyone (a kill switch that keeps the rule written down).
2. ``exclude_tenants`` / ``exclude_keys`` match: off.
3. ``tenants`` / ``keys`` match: on.
4. ``attributes``: every listed attribute must equal the value (or be one of the listed
   values); otherwise off.
5. ``rollout``: on when the context's sticky id falls in the first ``rollout`` percent
   (Unleash bucketing, see :func:`rollout_bucket`); a context without that id is off.
6. Otherwise on, unless ``tenants`` / ``keys`` were given without ``attributes`` or
   ``rollout``: then those lists are the whole audience, and everyone else is off.

So include lists are grants; ``attributes`` and ``rollout`` describe everyone else.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import FlagConfigError, InvalidArgumentError, InvalidTypeError
from ._murmur import rollout_bucket

__all__ = ["CONTEXT_KEYS", "TargetingRule", "check_context", "parse_percent", "rule_from_table"]

CONTEXT_KEYS = frozenset({"tenant", "key", "attributes"})
RULE_KEYS = (
    "enabled",
    "rollout",
    "group",
    "stickiness",
    "tenants",
    "exclude_tenants",
    "keys",
    "exclude_keys",
    "attributes",
)
_EMPTY: frozenset[str] = frozenset()
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
_PLAIN_MAPPINGS = (dict, MappingProxyType)


@dataclass(frozen=True)
class TargetingRule:
    """How one flag is decided per context. Build it from a dict with :meth:`from_mapping`."""

    enabled: bool = True
    rollout: int | None = None  # percent, 0..100
    group: str | None = None  # rollout group id; the flag's name when None (as Unleash)
    stickiness: str = "key"  # "key", "tenant", or an attribute name
    tenants: frozenset[str] = _EMPTY
    exclude_tenants: frozenset[str] = _EMPTY
    keys: frozenset[str] = _EMPTY
    exclude_keys: frozenset[str] = _EMPTY
    attributes: tuple[tuple[str, frozenset[Any]], ...] = ()
    # precomputed in __post_init__ for the evaluation path (not part of equality or repr)
    _excludes: bool = field(default=False, init=False, repr=False, compare=False)
    _includes: bool = field(default=False, init=False, repr=False, compare=False)
    _fallback: bool = field(default=True, init=False, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, source: str = "code") -> TargetingRule:
        """Parse a rule table (TOML or dict); ``source`` names where it came from in errors."""
        return rule_from_table(table, source=source)

    def __post_init__(self) -> None:
        if self.rollout is not None:
            parse_percent(self.rollout, source="TargetingRule", flag="rule")
        # precomputed for the evaluation path (frozen dataclass: set through object)
        lists = bool(self.tenants or self.keys)
        object.__setattr__(self, "_excludes", bool(self.exclude_tenants or self.exclude_keys))
        object.__setattr__(self, "_includes", lists)
        object.__setattr__(self, "_fallback", bool(self.attributes) or not lists)

    def evaluate(self, flag: str, context: Mapping[str, Any] | None) -> bool:
        """Decide the flag named ``flag`` for ``context`` (None means an empty context)."""
        if not self.enabled:
            return False
        if context is None:
            tenant = key = None
            attrs: Mapping[str, Any] = _NO_ATTRIBUTES
        elif type(context) is dict and context.keys() <= CONTEXT_KEYS:
            # inline fast path for a well-formed plain dict; check_context raises otherwise
            tenant = context.get("tenant")
            key = context.get("key")
            given: Any = context.get("attributes")
            attrs = _NO_ATTRIBUTES if given is None else given
            if not (
                (tenant is None or type(tenant) is str)
                and (key is None or type(key) is str)
                and type(attrs) in _PLAIN_MAPPINGS
            ):
                tenant, key, attrs = check_context(context)
        else:
            tenant, key, attrs = check_context(context)
        if self._excludes and (tenant in self.exclude_tenants or key in self.exclude_keys):
            return False
        if self._includes and (tenant in self.tenants or key in self.keys):
            return True
        for name, allowed in self.attributes:
            if name not in attrs:
                return False
            try:
                if attrs[name] not in allowed:
                    return False
            except TypeError:  # an unhashable value equals no listed scalar
                return False
        if self.rollout is not None:
            if self.stickiness == "key":
                sticky = key
            elif self.stickiness == "tenant":
                sticky = tenant
            else:
                sticky = attrs.get(self.stickiness)
            if sticky is None:
                return False
            return rollout_bucket(self.group or flag, str(sticky)) <= self.rollout
        # Included tenants/keys alone name the whole audience; with attribute constraints,
        # those constraints (already checked) describe everyone else who gets the feature.
        return self._fallback

    def __str__(self) -> str:
        if not self.enabled:
            return "off (rule disabled)"
        parts = []
        if self.tenants:
            parts.append("tenants=" + ",".join(sorted(self.tenants)))
        if self.keys:
            parts.append("keys=" + ",".join(sorted(self.keys)))
        if self.exclude_tenants:
            parts.append("exclude_tenants=" + ",".join(sorted(self.exclude_tenants)))
        if self.exclude_keys:
            parts.append("exclude_keys=" + ",".join(sorted(self.exclude_keys)))
        for name, allowed in self.attributes:
            parts.append(f"{name} in {sorted(map(str, allowed))}")
        if self.rollout is not None:
            group = f" group={self.group}" if self.group else ""
            parts.append(f"rollout {self.rollout}% by {self.stickiness}{group}")
        return "targeted: " + ("; ".join(parts) if parts else "on")


def check_context(context: Mapping[str, Any]) -> tuple[Any, Any, Mapping[str, Any]]:
    """Validate an evaluation context and return (tenant, key, attributes)."""
    if type(context) is not dict and not isinstance(context, Mapping):
        raise InvalidTypeError(
            f"flag context must be a mapping with keys {sorted(CONTEXT_KEYS)}, "
            f"not {type(context).__name__}"
        )
    if not context.keys() <= CONTEXT_KEYS:
        bad = sorted(set(context) - CONTEXT_KEYS, key=str)
        raise InvalidArgumentError(
            f"unknown flag context key(s) {bad}; a context has only "
            f"{sorted(CONTEXT_KEYS)} (put anything else under 'attributes')"
        )
    get = context.get
    tenant = get("tenant")
    key = get("key")
    attrs = get("attributes")
    if attrs is None:
        attrs = _NO_ATTRIBUTES
    elif type(attrs) is not dict and not isinstance(attrs, Mapping):
        raise InvalidTypeError(
            f"flag context 'attributes' must be a mapping, not {type(attrs).__name__}"
        )
    if tenant is not None and type(tenant) is not str:
        _check_str("tenant", tenant)
    if key is not None and type(key) is not str:
        _check_str("key", key)
    return tenant, key, attrs


def _check_str(label: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidTypeError(f"flag context {label!r} must be a str, not {type(value).__name__}")


_PERCENT = re.compile(r"[0-9]{1,3}%", re.ASCII)


def parse_percent(value: Any, *, source: str, flag: str) -> int:
    """A rollout percentage: an int 0..100 (TOML ``rollout = 25``) or the string ``"25%"``.

    Only the documented forms are accepted (docs/flags.md): a whole int (not a bool, not a
    float such as ``25.7`` or ``inf``), or one to three ASCII digits followed by ``%`` with
    nothing around them (no sign, no ``_``, no spaces, no other digits).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _PERCENT.fullmatch(value):
        number = int(value[:-1])
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise FlagConfigError(
            f"{source}: {flag}: rollout {shown} is not a whole percentage: write an integer "
            "0..100 (rollout = 25) or a string of ASCII digits and '%' ('25%')"
        )
    if not 0 <= number <= 100:
        raise FlagConfigError(f"{source}: {flag}: rollout {value!r} is outside 0..100%")
    return number


def _str_set(value: Any, *, source: str, flag: str, field: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) for v in value
    ):
        raise FlagConfigError(f"{source}: {flag}.{field} must be a list of strings, got {value!r}")
    return frozenset(value)


def rule_from_table(
    table: Mapping[str, Any], *, source: str, flag: str = "<flag>"
) -> TargetingRule:
    """Build a :class:`TargetingRule` from a TOML table or a dict, strictly."""
    unknown = [k for k in table if k not in RULE_KEYS]
    if unknown:
        k = str(unknown[0])
        near = difflib.get_close_matches(k, RULE_KEYS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(RULE_KEYS)}"
        raise FlagConfigError(f"{source}: {flag}: unknown rule key {k!r}{hint}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FlagConfigError(f"{source}: {flag}.enabled must be true or false, got {enabled!r}")
    rollout = table.get("rollout")
    if rollout is not None:
        rollout = parse_percent(rollout, source=source, flag=flag)
    group = table.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise FlagConfigError(f"{source}: {flag}.group must be a non-empty string")
    stickiness = table.get("stickiness", "key")
    if not isinstance(stickiness, str) or not stickiness:
        raise FlagConfigError(f"{source}: {flag}.stickiness must be a non-empty string")
    sets = {
        f: _str_set(table.get(f, ()), source=source, flag=flag, field=f)
        for f in ("tenants", "exclude_tenants", "keys", "exclude_keys")
    }
    attrs_in = table.get("attributes", {})
    if not isinstance(attrs_in, Mapping):
        raise FlagConfigError(f"{source}: {flag}.attributes must be a table of name = value(s)")
    attributes = []
    for name, allowed in sorted(attrs_in.items()):
        values = allowed if isinstance(allowed, (list, tuple, set, frozenset)) else [allowed]
        if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise FlagConfigError(
                f"{source}: {flag}.attributes.{name} must be a scalar or a non-empty list of "
                f"scalars, got {allowed!r}"
            )
        attributes.append((str(name), frozenset(values)))
    return TargetingRule(
        enabled=enabled,
        rollout=rollout,
        group=group,
        stickiness=stickiness,
        attributes=tuple(attributes),
        **sets,
    )
