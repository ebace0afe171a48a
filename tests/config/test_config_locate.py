"""key_lines: the line of every key path in forms dump() never writes (dotted keys, inline
tables, multi-line arrays and strings, nested arrays of tables), and never a wrong line."""

from __future__ import annotations

import tomllib
from hypothesis import given
from hypothesis import strategies as st

from registry_core.config._dump import toml_key, toml_value
from registry_core.config._locate import key_lines, line_of

DOC = '''\
# a comment [not.a.table]
version = 2
a.b.c = 1          # dotted: a and a.b are created here
"quoted.key" = 'x'
"esc\\u0041ped" = 1

[server]
note = """
[fake]
fake = 1
"""
lit = \'\'\'
[also.fake]\'\'\'
host = "h"

[[t.idx]]
name = "one"
sub = { deep = { x = 1 }, y = [1, 2] }

[[t.idx]]
name = "two"
list = [
  "a",  # comment ]
  { k = "v" },
]

[[t.idx.pub]]
name = "nested"

[t.other]
z = 3
'''


def test_lines_of_every_form():
    tomllib.loads(DOC)  # it is valid TOML
    lines = key_lines(DOC)
    assert lines[("version",)] == 2
    assert lines[("a",)] == lines[("a", "b")] == lines[("a", "b", "c")] == 3
    assert lines[("quoted.key",)] == 4
    assert lines[("server",)] == 7
    assert lines[("server", "note")] == 8
    assert ("server", "fake") not in lines and ("fake",) not in lines
    assert lines[("server", "lit")] == 12
    assert lines[("server", "host")] == 14
    assert lines[("t", "idx", 0)] == 16 and lines[("t", "idx", 0, "name")] == 17
    assert lines[("t", "idx", 0, "sub", "deep", "x")] == 18
    assert lines[("t", "idx", 0, "sub", "y", 1)] == 18
    assert lines[("t", "idx", 1)] == 20 and lines[("t", "idx", 1, "name")] == 21
    assert lines[("t", "idx", 1, "list", 0)] == 23
    assert lines[("t", "idx", 1, "list", 1, "k")] == 24
    assert lines[("t", "idx", 1, "pub", 0, "name")] == 28
    assert lines[("t", "other", "z")] == 31


def test_an_escaped_key_is_found_by_its_source_text():
    lines = key_lines(DOC)
    assert lines[("escAped",)] == 5


def test_a_line_not_showing_its_key_is_dropped_not_guessed():
    # an implicit table named by an escaped part: its line would not show "escAped"
    lines = key_lines('"esc\\u0041ped".x = 1\n')
    assert lines[("escAped", "x")] == 1
    assert ("escAped",) not in lines


def test_line_of_falls_back_to_the_enclosing_table():
    lines = key_lines(DOC)
    assert line_of(lines, ("server", "missing")) == 7
    assert line_of(lines, ("t", "idx", 1, "missing")) == 20
    assert line_of(lines, ("nothing",)) is None


def test_text_it_cannot_follow_gives_fewer_lines_not_wrong_ones():
    lines = key_lines("a = 1\nb = @oops\nc = 3\n")
    assert lines[("a",)] == 1
    assert lines.get(("c",)) in (None, 3)


keys = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8)
scalars = st.booleans() | st.integers() | st.text(max_size=8)


@given(st.dictionaries(keys, st.dictionaries(keys, scalars, max_size=4), min_size=1, max_size=4))
def test_tables_of_keys_each_on_their_line(doc):
    out, expected = [], {}
    for table, values in doc.items():
        out.append(f"[{toml_key(table)}]")
        expected[(table,)] = len(out)
        for key, value in values.items():
            out.append(f"{toml_key(key)} = {toml_value(value)}")
            expected[(table, key)] = len(out)
    text = "\n".join(out) + "\n"
    assert tomllib.loads(text) == doc
    lines = key_lines(text)
    for path, line in expected.items():
        assert line_of(lines, path) in (line, expected.get(path[:1])), path
        if path in lines:
            assert lines[path] == line


def test_crlf_line_endings():
    lines = key_lines('a = 1\r\n[t]\r\nb = """x\r\ny"""\r\nc = 2\r\n')
    assert lines[("a",)] == 1 and lines[("t",)] == 2
    assert lines[("t", "b")] == 3 and lines[("t", "c")] == 5
