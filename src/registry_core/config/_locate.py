"""Line numbers of TOML key paths, for error messages (tomllib gives values, no positions).

:func:`key_lines` scans text that tomllib has already accepted and maps every key path it sees
to the line it starts on: table headers ``[a.b]`` and ``[[a.b]]`` (array-of-tables elements get
their index: ``("tenants", "acme", "indexes", 0)``), dotted keys, inline tables, array elements.
Tables a header or dotted key creates implicitly map to the line that created them.
:func:`line_of` falls back to the nearest enclosing path it knows (a missing key: its table's
header), so a line it reports is never wrong, only sometimes approximate; None when nothing
encloses it. Should the scanner ever meet text it does not follow, it stops and keeps what it
found (fewer, never wrong, lines).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

__all__ = ["KeyPath", "key_lines", "line_of"]

KeyPath = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Stop(Exception):
    """Text the scanner does not follow: keep the lines found so far."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.explicit: set[KeyPath] = set()
        self.aot: dict[KeyPath, int] = {}
        #: the source text of each path's last key (as written: quotes, escapes)
        self.raw: dict[KeyPath, str] = {}
        self.last_raw = ""

    # -- characters ----------------------------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def advance(self, n: int = 1) -> None:
        chunk = self.s[self.i : self.i + n]
        self.line += chunk.count("\n")
        self.i += n

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def skip_comment(self) -> None:
        if self.peek() == "#":
            end = self.s.find("\n", self.i)
            self.i = len(self.s) if end < 0 else end

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "\n":
                self.advance()
            elif c == "#":
                self.skip_comment()
            else:
                return

    # -- keys ----------------------------------------------------------------------------------

    def key_part(self) -> str:
        c = self.peek()
        if c == '"':
            return self.basic_string()
        if c == "'":
            end = self.s.find("'", self.i + 1)
            if end < 0:
                raise _Stop
            part = self.s[self.i + 1 : end]
            self.i = end + 1
            return part
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in _BARE:
            self.i += 1
        if self.i == start:
            raise _Stop
        return self.s[start : self.i]

    def key(self) -> list[str]:
        start = self.i
        parts = [self.key_part()]
        while True:
            self.last_raw = self.s[start : self.i]
            self.skip_ws()
            if self.peek() != ".":
                return parts
            self.i += 1
            self.skip_ws()
            start = self.i
            parts.append(self.key_part())

    def basic_string(self) -> str:
        """A one-line ``"..."`` string at the cursor, unescaped."""
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\n":
                raise _Stop
            if c == "\\":
                e = self.s[self.i + 1 : self.i + 2]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.i += 2
                elif e in ("u", "U"):
                    width = 4 if e == "u" else 8
                    digits = self.s[self.i + 2 : self.i + 2 + width]
                    try:
                        out.append(chr(int(digits, 16)))
                    except ValueError:
                        raise _Stop from None
                    self.i += 2 + width
                else:
                    raise _Stop
                continue
            out.append(c)
            self.i += 1
        raise _Stop

    # -- values --------------------------------------------------------------------------------

    def record(
        self, path: KeyPath, line: int, *, explicit: bool = False, raw: str | None = None
    ) -> None:
        for n in range(1, len(path)):
            self.lines.setdefault(path[:n], line)
        if explicit:
            if path not in self.explicit:
                self.lines[path] = line
                self.explicit.add(path)
                if raw is not None:
                    self.raw[path] = raw
        elif path not in self.lines:
            self.lines[path] = line
            if raw is not None:
                self.raw[path] = raw

    def value(self, path: KeyPath) -> None:
        c = self.peek()
        if c in ('"', "'"):
            quote = c
            if self.peek(3) == quote * 3:
                end = self.i + 3
                while True:
                    end = self.s.find(quote * 3, end)
                    if end < 0:
                        raise _Stop
                    # a backslash escapes the quote in a basic string (count the run)
                    run = 0
                    while quote == '"' and self.s[end - 1 - run] == "\\":
                        run += 1
                    if run % 2 == 0:
                        break
                    end += 1
                end += 3
                extra = 0  # up to two quotes may end the content before the delimiter
                while extra < 2 and self.s[end : end + 1] == quote:
                    end += 1
                    extra += 1
                self.advance(end - self.i)
            elif quote == '"':
                self.basic_string()
            else:
                self.key_part()
        elif c == "[":
            self.i += 1
            n = 0
            while True:
                self.skip_blank()
                if self.peek() == "]":
                    self.i += 1
                    return
                self.record((*path, n), self.line)
                self.value((*path, n))
                self.skip_blank()
                if self.peek() == ",":
                    self.i += 1
                    n += 1
                elif self.peek() != "]":
                    raise _Stop
        elif c == "{":
            self.i += 1
            while True:
                self.skip_blank()
                if self.peek() == "}":
                    self.i += 1
                    return
                line = self.line
                sub = (*path, *self.key())
                self.record(sub, line, raw=self.last_raw)
                self.skip_ws()
                if self.peek() != "=":
                    raise _Stop
                self.i += 1
                self.skip_ws()
                self.value(sub)
                self.skip_blank()
                if self.peek() == ",":
                    self.i += 1
                elif self.peek() != "}":
                    raise _Stop
        else:  # number, bool, date-time: up to a delimiter
            start = self.i
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1
            if self.i == start:
                raise _Stop

    # -- document ------------------------------------------------------------------------------

    def header(self, parts: list[str], array: bool, raw: str) -> KeyPath:
        path: list[str | int] = []
        for n, part in enumerate(parts):
            path.append(part)
            here = tuple(path)
            if array and n == len(parts) - 1:
                count = self.aot.get(here, 0)
                self.aot[here] = count + 1
                self.record(here, self.line, explicit=True, raw=raw)
                path.append(count)
            elif here in self.aot:
                path.append(self.aot[here] - 1)
        return tuple(path)

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank()
            if self.i >= len(self.s):
                return
            line = self.line
            if self.peek() == "[":
                array = self.peek(2) == "[["
                self.i += 2 if array else 1
                self.skip_ws()
                parts = self.key()
                self.skip_ws()
                close = "]]" if array else "]"
                if self.peek(len(close)) != close:
                    raise _Stop
                self.i += len(close)
                raw = self.last_raw
                table = self.header(parts, array, raw)
                self.record(table, line, explicit=True, raw=raw)
            else:
                path = (*table, *self.key())
                self.record(path, line, raw=self.last_raw)
                self.skip_ws()
                if self.peek() != "=":
                    raise _Stop
                self.i += 1
                self.skip_ws()
                self.value(path)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Key path -> 1-based line, for TOML ``text`` that tomllib accepted."""
    scanner = _Scanner(text)
    with contextlib.suppress(_Stop, IndexError):
        scanner.document()
    # A guard against a scanner slip: a key's line must show the key (else it is dropped and
    # the enclosing path answers, approximately but not wrongly).
    source = text.split("\n")
    out: dict[KeyPath, int] = {}
    for path, line in scanner.lines.items():
        last = path[-1]
        shown = scanner.raw.get(path, last)
        if isinstance(shown, str) and (line > len(source) or shown not in source[line - 1]):
            continue
        out[path] = line
    return out


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, else of the nearest enclosing path known; None if none is."""
    for n in range(len(path), 0, -1):
        found = lines.get(path[:n])
        if found is not None:
            return found
    return None
