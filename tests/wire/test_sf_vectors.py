"""The RFC 8941 parser and serializer against the shared httpwg structured-field-tests vectors.

The vector files in tests/wire/data/ are copies of files of the httpwg/structured-field-tests
repository (see tests/wire/data/README.md for the commits); each record is parsed, compared
with ``expected`` and, when valid, serialized and compared with ``canonical`` (or ``raw``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.wire._sf import (
    Token,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_dictionary,
    serialize_item,
    serialize_list,
)

DATA = Path(__file__).parent / "data"
FILES = [
    "binary",
    "boolean",
    "dictionary",
    "item",
    "list",
    "listlist",
    "number",
    "param-dict",
    "param-list",
    "param-listlist",
    "string",
    "token",
]


def _cases():
    for name in FILES:
        for case in json.loads((DATA / f"{name}.json").read_text(encoding="utf-8")):
            yield pytest.param(case, id=f"{name}: {case['name']}")


def _bare(v):
    if isinstance(v, dict) and "__type" in v:
        if v["__type"] == "token":
            return ("token", v["value"])
        if v["__type"] == "binary":
            return ("binary", base64.b32decode(v["value"]))
        raise AssertionError(f"unexpected __type {v['__type']}")
    return ("value", type(v).__name__ if not isinstance(v, bool) else "bool", v)


def _pairs(mapping):
    # the vectors write parameters and dictionaries as objects or as lists of [key, value]
    return list(mapping.items()) if isinstance(mapping, dict) else [tuple(p) for p in mapping]


def _exp_item(item):
    value, params = item
    return (_bare(value), [(k, _bare(v)) for k, v in _pairs(params)])


def _exp_member(member):
    value, params = member
    if isinstance(value, list):
        return ("inner", [_exp_item(i) for i in value], [(k, _bare(v)) for k, v in _pairs(params)])
    return _exp_item(member)


def _ours_bare(v):
    if isinstance(v, Token):
        return ("token", str(v))
    if isinstance(v, bytes):
        return ("binary", v)
    return ("value", type(v).__name__ if not isinstance(v, bool) else "bool", v)


def _ours_item(item):
    value, params = item
    return (_ours_bare(value), [(k, _ours_bare(v)) for k, v in params.items()])


def _ours_member(member):
    value, params = member
    if isinstance(value, list):
        return (
            "inner",
            [_ours_item(i) for i in value],
            [(k, _ours_bare(v)) for k, v in params.items()],
        )
    return _ours_item(member)


def _normalise_numbers(x):
    # JSON has one number type: 1.0 in a vector is a Decimal when written with a '.'
    if isinstance(x, tuple) and len(x) == 3 and x[0] == "value" and x[1] in ("int", "float"):
        return ("value", "number", float(x[2]))
    if isinstance(x, (list, tuple)):
        return type(x)(_normalise_numbers(i) for i in x)
    return x


@pytest.mark.parametrize("case", list(_cases()))
def test_vector(case):
    kind = case["header_type"]
    parse = {"item": parse_item, "list": parse_list, "dictionary": parse_dictionary}[kind]
    if case.get("must_fail"):
        with pytest.raises(InvalidArgumentError):
            parse(case["raw"])
        return
    try:
        parsed = parse(case["raw"])
    except InvalidArgumentError:
        if case.get("can_fail"):
            return
        raise
    expected = case["expected"]
    if kind == "item":
        got, want = _ours_item(parsed), _exp_item(expected)
        text = serialize_item(parsed)
    elif kind == "list":
        got = [_ours_member(m) for m in parsed]
        want = [_exp_member(m) for m in expected]
        text = serialize_list(parsed)
    else:
        got = [(k, _ours_member(m)) for k, m in parsed.items()]
        want = [(k, _exp_member(m)) for k, m in _pairs(expected)]
        text = serialize_dictionary(parsed)
    assert _normalise_numbers(got) == _normalise_numbers(want)
    canonical = case.get("canonical", case["raw"])
    assert text == (canonical[0] if canonical else "")


def test_numbers_keep_their_type():
    assert parse_item("42") == (42, {}) and isinstance(parse_item("42")[0], int)
    assert isinstance(parse_item("1.0")[0], float)


def test_every_vector_file_is_used():
    on_disk = {p.stem for p in DATA.glob("*.json")}
    assert on_disk == set(FILES)
