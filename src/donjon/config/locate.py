"""Where each key of a TOML document is: a small scanner for line numbers.

``tomllib`` reports lines only for syntax errors; semantic errors (an unknown key,
a bad port) need the line of a key that parsed fine. This scanner runs only on text
``tomllib`` has already accepted, so it can assume valid TOML (TOML v1.0.0) and only
needs to find table headers (``[t]``, ``[[t]]``) and key/value lines, stepping over
values - including multi-line strings and arrays - without interpreting them.

Paths are tuples: ``("steward",)``, ``("env", "HOME")``, ``("files", 2, "port")``
(the third ``[[files]]`` table, counting from 0). Keys inside inline tables are not
indexed; :func:`SourceMap.line` falls back to the nearest enclosing key or table.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["Path", "SourceMap", "scan"]

Path = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


@dataclass(frozen=True)
class SourceMap:
    """Lines (1-based) of the table headers and keys of one document."""

    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or table, else ``None``."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def scan(text: str) -> SourceMap:
    """Index the headers and keys of ``text`` (valid TOML) by path."""
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.lines: dict[Path, int] = {}
        self.counts: dict[Path, int] = {}  # arrays of tables (by resolved path): elements so far

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def record(self, path: Path, pos: int) -> None:
        # Register enclosing paths too (dotted keys), without overriding earlier ones:
        # ``env.A = 1`` on line 3 locates ``env`` on line 3 unless ``[env]`` came first.
        line = self.line_at(pos)
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)
        self.lines[path] = line

    def resolve(self, keys: tuple[str, ...]) -> Path:
        """A header's path: ``[files.tls]`` after two ``[[files]]`` is ``("files", 1, "tls")``.

        TOML attaches a sub-table header to the most recent element of an array of tables.
        """
        path: list[str | int] = []
        for end in range(1, len(keys) + 1):
            path.append(keys[end - 1])
            count = self.counts.get(tuple(path))
            if count is not None and end < len(keys):
                path.append(count - 1)
        return tuple(path)

    def run(self) -> SourceMap:
        text = self.text
        current: Path = ()
        while True:
            self.skip_blank()
            if self.pos >= len(text):
                return SourceMap(self.lines)
            start = self.pos
            if text.startswith("[[", start):
                self.pos += 2
                keys = self.read_key()
                self.pos = text.index("]]", self.pos) + 2
                array = self.resolve(keys)
                index = self.counts.get(array, 0)
                self.counts[array] = index + 1
                current = (*array, index)
                self.record(current, start)
            elif text[start] == "[":
                self.pos += 1
                keys = self.read_key()
                self.pos = text.index("]", self.pos) + 1
                current = self.resolve(keys)
                self.record(current, start)
            else:
                keys = self.read_key()
                self.skip_inline_space()
                self.pos += 1  # "="
                self.skip_inline_space()
                self.record((*current, *keys), start)
                self.skip_value()
            self.skip_to_line_end()

    # -- lexical helpers ---------------------------------------------------------------

    def skip_inline_space(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in " \t":
            self.pos += 1

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments between statements."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            else:
                return

    def skip_to_line_end(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1

    def read_key(self) -> tuple[str, ...]:
        """A (possibly dotted, possibly quoted) key; stops before ``=``, ``]`` or ``]]``."""
        text = self.text
        parts: list[str] = []
        while True:
            self.skip_inline_space()
            ch = text[self.pos]
            if ch == '"':
                parts.append(self.read_basic_string())
            elif ch == "'":
                end = text.index("'", self.pos + 1)
                parts.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                start = self.pos
                while self.pos < len(text) and text[self.pos] in _BARE:
                    self.pos += 1
                parts.append(text[start : self.pos])
            self.skip_inline_space()
            if self.pos < len(text) and text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(parts)

    def read_basic_string(self) -> str:
        """A one-line ``"..."`` string at ``pos``, decoded (used for quoted keys)."""
        text = self.text
        self.pos += 1
        out: list[str] = []
        while True:
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                code = text[self.pos + 1]
                if code in "uU":
                    width = 4 if code == "u" else 8
                    out.append(chr(int(text[self.pos + 2 : self.pos + 2 + width], 16)))
                    self.pos += 2 + width
                else:
                    out.append(_ESCAPES.get(code, code))
                    self.pos += 2
                continue
            out.append(ch)
            self.pos += 1

    def skip_string(self) -> None:
        """Step over any of TOML's four string forms starting at ``pos``."""
        text = self.text
        quote = text[self.pos]
        if text.startswith(quote * 3, self.pos):
            end = self.pos + 3
            while True:
                if quote == '"' and text[end] == "\\":
                    end += 2
                    continue
                if text.startswith(quote * 3, end):
                    end += 3
                    # Up to two quotes may directly precede the closing delimiter.
                    for _ in range(2):
                        if end < len(text) and text[end] == quote:
                            end += 1
                    self.pos = end
                    return
                end += 1
        end = self.pos + 1
        while text[end] != quote:
            end += 2 if (quote == '"' and text[end] == "\\") else 1
        self.pos = end + 1

    def skip_value(self) -> None:
        text = self.text
        ch = text[self.pos]
        if ch in "\"'":
            self.skip_string()
        elif ch in "[{":
            depth = 0
            while True:
                ch = text[self.pos]
                if ch in "\"'":
                    self.skip_string()
                    continue
                if ch == "#":
                    self.skip_to_line_end()
                    continue
                if ch in "[{":
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        self.pos += 1
                        return
                self.pos += 1
        # Scalars (numbers, booleans, dates) end at the line end, handled by the caller.
