"""dump() and parse() are inverse: parse(dump(c)) == c over generated configs; the TOML value
writer against tomllib; every leaf line of a dump is where parse says a bad value is."""

from __future__ import annotations

import re

import pytest
import tomllib
from _config_strategies import configs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.config import dump, parse
from registry_core.config._dump import toml_key, toml_value
from registry_core.errors import ConfigError

_slow = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_slow
@given(configs())
def test_parse_dump_round_trip(config):
    text = dump(config)
    assert parse(text) == config
    assert dump(parse(text)) == text  # normalized: a fixed point


toml_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",))), inner, max_size=4
    ),
    max_leaves=12,
)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), toml_values)
def test_toml_value_round_trips_through_tomllib(key, value):
    assert tomllib.loads(f"{toml_key(key)} = {toml_value(value)}\n") == {key: value}


def test_toml_value_refuses_other_types():
    with pytest.raises(TypeError):
        toml_value(object())


_LEAF = re.compile(r'^((?:[A-Za-z0-9_-]+)|(?:"(?:[^"\\]|\\.)*")) = ')


@_slow
@given(configs(), st.data())
def test_a_bad_value_is_reported_at_its_line_and_key(config, data):
    """Replace any one leaf value of a valid dump by a date-time (no key of the schema takes
    one): parse names exactly that line and key."""
    lines = dump(config).split("\n")
    leaves = [n for n, line in enumerate(lines) if _LEAF.match(line)]
    n = data.draw(st.sampled_from(leaves))
    key = _LEAF.match(lines[n]).group(1)
    lines[n] = f"{key} = 1979-05-27T07:32:00Z"
    with pytest.raises(ConfigError) as caught:
        parse("\n".join(lines), source="c.toml")
    assert caught.value.line == n + 1, (caught.value, lines[n])
    assert caught.value.key.endswith(key), (caught.value.key, key)
    assert str(caught.value).startswith(f"c.toml:{n + 1}: {caught.value.key}: ")
