"""HuJSON: parse, find by path, and patch a document so that every byte not addressed is kept.

HuJSON (JWCC) is JSON plus ``//`` and ``/* */`` comments and trailing commas; it is the format of
a Tailscale policy file. This module follows the split of Tailscale's own library,
github.com/tailscale/hujson (the version tailscale.com@v1.102.5 requires, go.mod:107; cited below
as ``hujson@ecc657c/<file>:<line>``): a parser that keeps where every token is (``parse.go``), a
find by path (``find.go``) and patches (``patch.go``). Unlike that library, patches here are text
splices: the result is the input with one region replaced, so users keep their comments, blank
lines and layout (a policy is a hand-written file).

Paths follow how Tailscale reads a policy: with Go's ``encoding/json`` into structs. Unmarshal
"matches incoming object keys to the keys used by Marshal (either the struct field name or its
tag), ignoring case" (go1.26 src/encoding/json/decode.go:46-49; older releases worded it
"preferring an exact match but also accepting a case-insensitive match"), folding with Unicode
simple case folding like ``bytes.EqualFold`` (fold.go:14-16, decode.go:699-701), while map keys
must match exactly. That is why ``"OmitDefaultRegions"`` in a policy sets the field tagged
``omitDefaultRegions`` (tailscale.com@v1.102.5/tailcfg/derpmap.go:34). So a path segment is

* ``"derpMap"`` (a plain ``str``): a struct field, matched case-insensitively;
* ``Key("tailscale.com/cap/x")``: an exact key of a ``map[string]T``;
* ``IntKey(900)``: a key of a ``map[int]T`` such as ``derpMap.Regions`` (Go parses the key as an
  integer, so ``"900"``, ``"0900"`` and ``"+900"`` all name region 900);
* ``3`` (an ``int``, negative counts from the end): an array element.

Two members that match one segment (the same key twice, or ``Regions`` and ``regions``) make the
document ambiguous: Go would merge or overwrite them ("later duplicates will replace or be merged
into prior values", decode.go:51-53), so this module refuses
(:class:`AmbiguousKeyError`) rather than guess. An existing member is always used with the file's
spelling; a new one gets the caller's spelling.

No I/O and no imports from the project: a leaf.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal, TypeAlias

__all__ = [
    "MAX_DEPTH",
    "AmbiguousKeyError",
    "Document",
    "Entry",
    "Found",
    "HuJSONError",
    "HuJSONSyntaxError",
    "IntKey",
    "Key",
    "Node",
    "NodeKind",
    "Path",
    "PathError",
    "PathNotFoundError",
    "PathTypeError",
    "Segment",
    "append",
    "check_unique_keys",
    "equal_fold",
    "find",
    "format_path",
    "go_int",
    "loads",
    "parse",
    "remove",
    "set",
]

MAX_DEPTH = 256
"""Deepest nesting accepted (objects and arrays); deeper text is refused, not a RecursionError."""

# hujsonfmt inlines an object or array whose one-line form fits this width
# (hujson@ecc657c/format.go:55 punchCardWidth, used at :211); new values are rendered the same way.
_INLINE_WIDTH = 80


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class HuJSONError(ValueError):
    """Root of this module's errors: the text, or a path into it, cannot be used as asked."""


class HuJSONSyntaxError(HuJSONError):
    """The text is not HuJSON. ``line`` and ``column`` count from 1 (columns in characters)."""

    def __init__(self, reason: str, offset: int, line: int, column: int) -> None:
        super().__init__(f"not valid HuJSON: {reason} at line {line}, column {column}")
        self.reason = reason
        self.offset = offset
        self.line = line
        self.column = column


class PathError(HuJSONError):
    """A path cannot be followed or changed; ``path`` is the part of it that is at fault."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class AmbiguousKeyError(PathError):
    """Two or more members of one object match a path segment; ``spellings`` are (key, line)."""

    def __init__(self, path: Path, segment: Segment, spellings: tuple[tuple[str, int], ...]):
        keys = [key for key, _ in spellings]
        lines = [str(line) for _, line in spellings]
        where = _where(path)
        if len(builtins.set(keys)) == 1:
            what = f"found the key {keys[0]!r} {_times(len(keys))} in {where} (lines {_and(lines)})"
        else:
            listed = _and([f"{key!r} (line {line})" for key, line in spellings])
            both = "both" if len(keys) == 2 else "all"
            what = f"found {listed} in {where}, which {both} mean {_segment_text(segment)!r}"
            if isinstance(segment, str):
                # Go's encoding/json matches struct fields ignoring case (decode.go:46-49).
                what += " (keys are matched ignoring case)"
        super().__init__(f"{what}; keep only one so the file is unambiguous", path)
        self.segment = segment
        self.spellings = spellings


class PathTypeError(PathError):
    """The value at ``path`` is of the wrong kind (e.g. an array where an object must be)."""

    def __init__(self, path: Path, expected: str, found: str, line: int, column: int) -> None:
        super().__init__(
            f"{_where(path, value=True)} must be {expected}, found {found} "
            f"at line {line}, column {column}",
            path,
        )
        self.expected = expected
        self.found = found


class PathNotFoundError(PathError):
    """A path that must exist for the operation does not (``path`` is its first missing prefix)."""


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n} times"


def _where(path: Path, *, value: bool = False) -> str:
    if not path:
        return "the top-level value" if value else "the top-level object"
    return f'"{format_path(path)}"'


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """An exact map key (``map[string]T`` in Go): matched only by the same decoded string."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Key name must be str, got {type(self.name).__name__}")


@dataclass(frozen=True, slots=True)
class IntKey:
    """A key of a Go ``map[int]T`` (``derpMap.Regions``): matches keys that parse to ``number``.

    Go's encoding/json reads such keys with ``strconv.ParseInt(key, 10, 64)`` (go1.26
    src/encoding/json/decode.go:788-790), which takes an optional sign and leading zeros.
    A new member is spelled ``str(number)``.
    """

    number: int

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int):
            raise TypeError(f"IntKey number must be int, got {type(self.number).__name__}")


Segment: TypeAlias = str | Key | IntKey | int
"""``str``: struct field (any case); :class:`Key`/:class:`IntKey`: map key; ``int``: array index."""
Path: TypeAlias = tuple[Segment, ...]

_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_$@:+-]+")


def _segment_text(segment: Segment) -> str:
    if isinstance(segment, Key):
        return segment.name
    if isinstance(segment, IntKey):
        return str(segment.number)
    return str(segment)


def format_path(path: Sequence[Segment]) -> str:
    """A path as people read it: ``derpMap.Regions.900``, ``grants[2].app["x.y/z"]``."""
    out = ""
    for segment in path:
        if isinstance(segment, int) and not isinstance(segment, bool):
            out += f"[{segment}]"
            continue
        name = _segment_text(segment)
        if _PLAIN_SEGMENT.fullmatch(name):
            out += f".{name}" if out else name
        else:
            out += f"[{json.dumps(name, ensure_ascii=False)}]"
    return out


def _as_path(path: Sequence[Segment]) -> Path:
    if isinstance(path, str | bytes) or not isinstance(path, Sequence):
        raise TypeError(f"path must be a tuple of segments, got {path!r}")
    for segment in path:
        if isinstance(segment, bool) or not isinstance(segment, str | Key | IntKey | int):
            raise TypeError(
                f"path segment must be str (field), Key/IntKey (map key) or int (index), "
                f"got {segment!r}"
            )
    return tuple(path)


def _spelling(segment: Segment) -> str:
    """The key a new member gets for ``segment`` (the caller's spelling)."""
    if isinstance(segment, int):
        raise AssertionError("array indexes have no spelling")
    return _segment_text(segment)


# --- case folding as Go's encoding/json does it -----------------------------------------------


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """``ch``'s class under Unicode simple case folding (the relation unicode.SimpleFold walks).

    Python exposes full case folding only; a character whose full fold is several characters
    (ß → ss) has a simple fold equal to its single-character lowercase when there is one (ẞ → ß),
    else none (ß, İ). tests/test_hujson.py checks this against Go's table for every code point.
    """
    folded = ch.casefold()
    if len(folded) == 1:
        return folded
    lower = ch.lower()
    return lower if len(lower) == 1 else ch


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(ch) for ch in text)


def equal_fold(a: str, b: str) -> bool:
    """Go's ``bytes.EqualFold``: equal under Unicode simple case folding (K ~ k ~ K, ſ ~ s)."""
    return _fold(a) == _fold(b)


_GO_INT = re.compile(r"[+-]?[0-9]+")


def go_int(key: str) -> int | None:
    """``strconv.ParseInt(key, 10, 64)``, or None where Go would fail."""
    if not _GO_INT.fullmatch(key):
        return None
    number = int(key)
    return number if -(2**63) <= number < 2**63 else None


def _matches(segment: str | Key | IntKey, folded: str | None, key: str) -> bool:
    if isinstance(segment, Key):
        return key == segment.name
    if isinstance(segment, IntKey):
        return go_int(key) == segment.number
    return _fold(key) == folded


# --------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------

NodeKind: TypeAlias = Literal["object", "array", "string", "number", "boolean", "null"]

_KIND_NAMES: dict[str, str] = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


@dataclass(slots=True, eq=False, repr=False)
class Node:
    """One value with its span ``[start, end)``; containers also know their entries.

    Read-only by convention (built by :func:`parse`).
    """

    kind: NodeKind
    start: int
    end: int
    scalar: Any = None
    """Strings, numbers, booleans and null: the Python value."""
    entries: tuple[Entry, ...] = ()
    """Objects: members in file order; arrays: elements."""
    inner_last: int = 0
    """Containers: end of the last token (value, comma or comment) before the closing bracket."""

    def __repr__(self) -> str:
        inside = f", {len(self.entries)} entries" if self.kind in ("object", "array") else ""
        return f"Node({self.kind}, {self.start}:{self.end}{inside})"


@dataclass(slots=True, eq=False, repr=False)
class Entry:
    """An object member (``key`` set) or an array element (``key`` None)."""

    key: str | None
    """The decoded member name (escapes resolved); None for array elements."""
    start: int
    """Where the entry's text starts: the key's opening quote, or the element's value."""
    before: int
    """End of the last token before the entry: the ``{``, ``[`` or comma, or a comment after it."""
    value: Node
    comma: int | None
    """Offset of the comma after the value, if any (a trailing comma for the last entry)."""

    @property
    def end(self) -> int:
        """End of the entry's text: after its comma, or after its value when it has none."""
        return self.value.end if self.comma is None else self.comma + 1

    def __repr__(self) -> str:
        return f"Entry({self.key!r}, {self.start}:{self.end}, {self.value!r})"


def _kind_name(node: Node) -> str:
    return _KIND_NAMES[node.kind]


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_WS = " \t\r\n"
_WS_RUN = re.compile(r"[ \t\r\n]*")  # RFC 8259 whitespace only (hujson@ecc657c/parse.go:220)


def _ws_end(text: str, pos: int) -> int:
    return _WS_RUN.match(text, pos).end()  # type: ignore[union-attr]  # `*` always matches


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# A bare literal runs over these characters (hujson@ecc657c/parse.go:191-194); anything of them
# left after a number or true/false/null makes the literal invalid.
_WORD = re.compile(r"[-+.a-zA-Z0-9]*")
# The stdlib's JSON string scanner (C-accelerated); typeshed does not declare it.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_LITERALS: dict[str, tuple[NodeKind, Any]] = {
    "true": ("boolean", True),
    "false": ("boolean", False),
    "null": ("null", None),
}
_SCANSTRING_REASONS = (
    ("Unterminated string", "unterminated string"),
    ("Invalid control character", "control character in string"),
    ("Invalid \\uXXXX", "bad \\u escape in string"),
    ("Invalid \\escape", "bad escape in string"),
)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _Parser:
    """Recursive descent over the HuJSON grammar (hujson@ecc657c/types.go:34-72)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.line_comment_ends: list[int] = []

    def error(self, reason: str, at: int | None = None) -> HuJSONSyntaxError:
        offset = self.pos if at is None else at
        line, column = _line_column(self.text, offset)
        return HuJSONSyntaxError(reason, offset, line, column)

    def skip(self) -> int:
        """Skips whitespace and comments; returns the end of the last comment, or the start."""
        text, start = self.text, self.pos
        pos = _ws_end(text, start)
        if text.startswith("/", pos):
            return self.comments(pos, start)
        self.pos = pos
        return start

    def comments(self, pos: int, last: int) -> int:
        text = self.text
        while True:
            if text.startswith("//", pos):
                newline = text.find("\n", pos)
                if newline < 0:
                    # A line comment ends only at a line feed (hujson@ecc657c/types.go:58-63,
                    # parse.go:251-265): Tailscale refuses one that runs into the end of the text.
                    raise self.error("a // comment must end with a newline, even the last one", pos)
                # The CR of a CRLF is left out, so an insertion there keeps the CRLF whole.
                last = newline - 1 if text[newline - 1] == "\r" else newline
                self.line_comment_ends.append(last)
                pos = last
            elif text.startswith("/*", pos):
                close = text.find("*/", pos + 2)
                if close < 0:
                    raise self.error("unterminated /* comment", pos)
                pos = last = close + 2
            else:
                self.pos = pos
                return last
            pos = _ws_end(text, pos)

    def document(self) -> Node:
        if self.text.startswith("\ufeff"):  # a BOM (which tailscale/hujson would refuse) is kept
            self.pos = 1
        self.skip()
        if self.pos >= self.n:
            raise self.error("empty document")
        root = self.value(0)
        self.skip()
        if self.pos != self.n:
            raise self.error(f"unexpected {self.text[self.pos]!r} after the top-level value")
        return root

    def value(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error(f"nesting too deep (more than {MAX_DEPTH} levels)")
        if self.pos >= self.n:
            raise self.error("unexpected end of text, expected a value")
        ch = self.text[self.pos]
        if ch == "{":
            return self.container("object", "}", depth)
        if ch == "[":
            return self.container("array", "]", depth)
        start = self.pos
        if ch == '"':
            value = self.string()
            return Node("string", start, self.pos, scalar=value)
        if ch == "-" or "0" <= ch <= "9":
            return self.number()
        word = _WORD.match(self.text, start).group()  # type: ignore[union-attr]
        if word in _LITERALS:
            kind, value = _LITERALS[word]
            self.pos = start + len(word)
            return Node(kind, start, self.pos, scalar=value)
        raise self.error(f"unexpected {word or ch!r}, expected a value")

    def string(self) -> str:
        start = self.pos
        try:
            # The stdlib's (C) JSON string scanner: RFC 8259 escapes, no control characters.
            value, self.pos = _scanstring(self.text, start + 1, True)
        except json.JSONDecodeError as err:
            reason = next(
                (ours for theirs, ours in _SCANSTRING_REASONS if err.msg.startswith(theirs)),
                err.msg,
            )
            at = err.pos
            if self.text.startswith("\\u", at - 1):  # point at the backslash, as for \x
                at -= 1
            raise self.error(reason, at) from None
        return value

    def number(self) -> Node:
        text, start = self.text, self.pos
        match = _NUMBER.match(text, start)
        word = _WORD.match(text, start).group()  # type: ignore[union-attr]
        if match is None or match.end() != start + len(word):
            raise self.error(f"bad number {word!r}", start)
        literal = match.group()
        try:
            value: int | float = (
                float(literal) if match.group(1) or match.group(2) else int(literal)
            )
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise self.error("number too long", start) from None
        self.pos = match.end()
        return Node("number", start, self.pos, scalar=value)

    def container(self, kind: NodeKind, close: str, depth: int) -> Node:
        # The hot loop of the parser: whitespace skips are inlined (comments are rare).
        text, start = self.text, self.pos
        is_object = kind == "object"
        entries: list[Entry] = []
        sig = self.pos = start + 1
        pos = _ws_end(text, sig)
        if text.startswith("/", pos):
            sig = self.comments(pos, sig)
            pos = self.pos
        while True:
            if pos >= self.n:
                raise self.error(f"unterminated {kind}", start)
            ch = text[pos]
            if ch == close:
                self.pos = pos + 1
                return Node(kind, start, pos + 1, entries=tuple(entries), inner_last=sig)
            if entries and entries[-1].comma is None:
                raise self.error(f"expected ',' or '{close}' in {kind}", pos)
            before = sig
            entry_start = self.pos = pos
            key: str | None = None
            if is_object:
                if ch != '"':
                    raise self.error(f"unexpected {ch!r}, expected a quoted key or '}}'")
                key = self.string()
                self.skip()
                if not text.startswith(":", self.pos):
                    raise self.error("expected ':' after object key")
                self.pos += 1
                self.skip()
            if depth < MAX_DEPTH and text.startswith('"', self.pos):
                value_start = self.pos
                scalar = self.string()
                value = Node("string", value_start, self.pos, scalar=scalar)
            else:
                value = self.value(depth + 1)
            sig = self.pos
            pos = _ws_end(text, sig)
            if text.startswith("/", pos):
                sig = self.comments(pos, sig)
                pos = self.pos
            comma = None
            if text.startswith(",", pos):
                comma = pos
                sig = pos + 1
                pos = _ws_end(text, sig)
                if text.startswith("/", pos):
                    sig = self.comments(pos, sig)
                    pos = self.pos
            entries.append(Entry(key, entry_start, before, value, comma))


def _to_python(node: Node) -> Any:
    if node.kind == "object":
        # Plain JSON semantics: the last duplicate wins (Go's encoding/json also keeps the last).
        return {entry.key: _to_python(entry.value) for entry in node.entries}
    if node.kind == "array":
        return [_to_python(entry.value) for entry in node.entries]
    return node.scalar


# --------------------------------------------------------------------------------------------
# Document and find
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Document:
    """A parsed HuJSON text: the text itself, its syntax tree, and its layout conventions."""

    text: str
    root: Node
    line_comment_ends: frozenset[int]
    """Offsets where a ``//`` comment ends (a newline must follow anything inserted there)."""

    def __repr__(self) -> str:
        return f"Document({len(self.text)} characters, root={self.root!r})"

    def to_python(self) -> Any:
        """The plain value (a fresh copy each call)."""
        return _to_python(self.root)

    def line_column(self, offset: int) -> tuple[int, int]:
        return _line_column(self.text, offset)

    def find(self, path: Sequence[Segment], *, kind: NodeKind | None = None) -> Found | None:
        """See :func:`find`."""
        chain, missing = _walk(self, _as_path(path))
        if missing is not None:
            return None
        found = chain[-1]
        if kind is not None and found.node.kind != kind:
            raise found.type_error(_KIND_NAMES[kind])
        return found

    @cached_property
    def newline(self) -> str:
        """The file's line ending: CRLF when most lines end so, else LF."""
        crlf = self.text.count("\r\n")
        return "\r\n" if crlf > self.text.count("\n") - crlf else "\n"

    @cached_property
    def indent_unit(self) -> str:
        """One indentation step, from the first entry that sits on its own line (tab if none).

        Policies written in the admin console use tabs; hand-written ones often 2 or 4 spaces.
        """
        text = self.text
        queue = [self.root]
        for node in queue:  # breadth first; the list grows while we walk it
            parent = _line_indent(text, node.start)
            for entry in node.entries:
                if _first_on_line(text, entry.start):
                    own = _line_indent(text, entry.start)
                    if own.startswith(parent) and len(own) > len(parent):
                        return own[len(parent) :]
                if entry.value.entries:
                    queue.append(entry.value)
        return "\t"


@dataclass(frozen=True, eq=False, repr=False)
class Found:
    """A value found at a path, and where it is."""

    document: Document
    path: Path
    """The path as the file spells it (field names in the file's case, indexes non-negative)."""
    node: Node
    entry: Entry | None
    """The member or element holding the value; None for the top-level value."""
    index: int | None
    """Position of ``entry`` in its container."""

    def __repr__(self) -> str:
        return f"Found({format_path(self.path) or '(top level)'}, {self.kind}, line {self.line})"

    @property
    def kind(self) -> NodeKind:
        return self.node.kind

    @property
    def value(self) -> Any:
        """The plain Python value (a fresh copy each time)."""
        return _to_python(self.node)

    @property
    def source(self) -> str:
        """The value's text exactly as written (comments inside it included)."""
        return self.document.text[self.node.start : self.node.end]

    @property
    def line(self) -> int:
        return self.document.line_column(self.node.start)[0]

    @property
    def column(self) -> int:
        return self.document.line_column(self.node.start)[1]

    @property
    def size(self) -> int:
        """Number of members or elements (0 for scalars)."""
        return len(self.node.entries)

    def keys(self) -> tuple[str, ...]:
        """Member names as the file spells them, in file order (an object's only)."""
        if self.node.kind != "object":
            raise self.type_error("an object")
        return tuple(entry.key for entry in self.node.entries if entry.key is not None)

    def type_error(self, expected: str) -> PathTypeError:
        """The error to raise when this value is not of the ``expected`` kind."""
        line, column = self.document.line_column(self.node.start)
        return PathTypeError(self.path, expected, _kind_name(self.node), line, column)


def parse(text: str) -> Document:
    """Parse HuJSON; raises :class:`HuJSONSyntaxError` saying what is wrong and where."""
    if not isinstance(text, str):
        raise TypeError(f"HuJSON text must be str, got {type(text).__name__}")
    parser = _Parser(text)
    root = parser.document()
    return Document(text, root, frozenset(parser.line_comment_ends))


def loads(text: str) -> Any:
    """HuJSON text → plain Python values, like ``json.loads`` (a duplicate's last value wins)."""
    return parse(text).to_python()


def _document(doc: str | Document) -> Document:
    return doc if isinstance(doc, Document) else parse(doc)


def _walk(doc: Document, path: Path) -> tuple[list[Found], int | None]:
    """Follows ``path``: the values found for each prefix, and the index of the first segment
    that matched nothing (None when all did). Raises on ambiguity and on kind mismatches."""
    found = Found(doc, (), doc.root, None, None)
    chain = [found]
    for i, segment in enumerate(path):
        node = found.node
        if isinstance(segment, int):
            if node.kind != "array":
                raise found.type_error(f"an array to take element [{segment}]")
            index = segment + len(node.entries) if segment < 0 else segment
            if not 0 <= index < len(node.entries):
                return chain, i
            spelled: Segment = index
        else:
            if node.kind != "object":
                raise found.type_error(f"an object to look up {_segment_text(segment)!r}")
            folded = _fold(segment) if isinstance(segment, str) else None
            hits = [j for j, e in enumerate(node.entries) if _matches(segment, folded, e.key or "")]
            if not hits:
                return chain, i
            if len(hits) > 1:
                spellings = tuple(
                    (node.entries[j].key or "", doc.line_column(node.entries[j].start)[0])
                    for j in hits
                )
                raise AmbiguousKeyError(found.path, segment, spellings)
            index = hits[0]
            key = node.entries[index].key or ""
            spelled = key if isinstance(segment, str) else Key(key)
        entry = node.entries[index]
        found = Found(doc, (*found.path, spelled), entry.value, entry, index)
        chain.append(found)
    return chain, None


def find(
    doc: str | Document, path: Sequence[Segment], *, kind: NodeKind | None = None
) -> Found | None:
    """The value at ``path`` and where it is, or None when some segment matches nothing.

    Raises :class:`AmbiguousKeyError` when two members match a segment, and
    :class:`PathTypeError` when the path runs through a value of the wrong kind, or when ``kind``
    is given and the value found is of another kind.
    """
    return _document(doc).find(path, kind=kind)


def check_unique_keys(
    doc: str | Document, path: Sequence[Segment] = (), *, case_insensitive: bool = True
) -> None:
    """Raise :class:`AmbiguousKeyError` if two members of the object at ``path`` clash.

    With ``case_insensitive`` (for a struct, like the policy's top level) ``acls`` and ``ACLs``
    clash; without it (a map) only equal keys do. A missing ``path`` is not an error.
    """
    document = _document(doc)
    found = document.find(path, kind="object")
    if found is None:
        return
    seen: dict[str, str] = {}
    for entry in found.node.entries:
        key = entry.key or ""
        norm = _fold(key) if case_insensitive else key
        if norm in seen:
            segment: Segment = seen[norm] if case_insensitive else Key(seen[norm])
            _walk(document, (*found.path, segment))  # raises, naming every spelling
        seen[norm] = key


# --------------------------------------------------------------------------------------------
# Rendering new values
# --------------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _string(value: str) -> str:
    # Readable UTF-8 like hujson.String (hujson@ecc657c/types.go:213-245); a lone surrogate
    # cannot be UTF-8 and is written as a \u escape instead.
    quoted = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _depth(value: Any) -> int:
    """Nesting depth of a Python value (0 for scalars), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        for child in children:
            deepest = max(deepest, level + 1)
            if deepest > MAX_DEPTH:
                return deepest
            stack.append((child, level + 1))
    return deepest


def _compact(value: Any) -> str:
    """One-line JSON with ``", "`` and ``": "`` separators; refuses what JSON cannot hold."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, got {key!r}")
            parts.append(f"{_string(key)}: {_compact(item)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value, allow_nan=False)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def _pretty(value: Any, indent: str, unit: str, nl: str) -> str:
    """``value`` laid out like hujsonfmt: inline when its one-line form is at most 80 wide,
    else one entry per line; ``indent`` is the indentation of the line the value starts on."""
    flat = _compact(value)
    if len(flat) <= _INLINE_WIDTH or not isinstance(value, dict | list | tuple) or not value:
        return flat
    inner = indent + unit
    if isinstance(value, dict):
        rows = [f"{inner}{_string(k)}: {_pretty(v, inner, unit, nl)}" for k, v in value.items()]
        return "{" + nl + ("," + nl).join(rows) + nl + indent + "}"
    rows = [inner + _pretty(v, inner, unit, nl) for v in value]
    return "[" + nl + ("," + nl).join(rows) + nl + indent + "]"


def _entry_text(key: str | None, value: Any, indent: str | None, doc: Document) -> str:
    """A member (``"key": value``) or element, pretty at ``indent`` or compact when it is None."""
    if indent is None:
        rendered = _compact(value)
    else:
        rendered = _pretty(value, indent, doc.indent_unit, doc.newline)
    return rendered if key is None else f"{_string(key)}: {rendered}"


def _check_value(value: Any, at_depth: int) -> None:
    if at_depth + _depth(value) > MAX_DEPTH:
        raise HuJSONError(f"the value would nest deeper than {MAX_DEPTH} levels")
    _compact(value)  # type and NaN errors before anything else happens


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and from True (the file must say what was meant)."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)  # -0.0 is not 0.0
    return bool(a == b)


# --------------------------------------------------------------------------------------------
# Splicing
# --------------------------------------------------------------------------------------------

_Edit: TypeAlias = tuple[int, int, str]  # replace text[start:end] with the string


def _apply(text: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping edits; at one offset, the first-listed edit's text comes first."""
    order = sorted(range(len(edits)), key=lambda i: (edits[i][0], i))
    out: list[str] = []
    cursor = 0
    for i in order:
        start, end, replacement = edits[i]
        assert start >= cursor, "overlapping edits"
        out.append(text[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_indent(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _first_on_line(text: str, pos: int) -> bool:
    return text[_line_start(text, pos) : pos].strip(" \t") == ""


def _chunks(gap: str, chunk: str) -> int | None:
    """How many times ``gap`` repeats ``chunk`` exactly (0 for ""), or None."""
    if gap == "":
        return 0
    if len(gap) % len(chunk) == 0 and gap == chunk * (len(gap) // len(chunk)):
        return len(gap) // len(chunk)
    return None


def _insert_edits(doc: Document, target: Found, key: str | None, value: Any) -> list[_Edit]:
    """Edits that add an entry (``key`` for a member, None for an element) after the last one.

    Built as the exact inverse of :func:`_remove_edits`: the entry goes right after the last
    token before the closing bracket, preceded only by a newline and indentation (or one space on
    a one-line container), and a comma goes after the previous value only when the container had
    no trailing comma (removal takes that comma away again).
    """
    text, node, nl = doc.text, target.node, doc.newline
    close = node.end - 1
    outer = _line_indent(text, node.start)
    if not node.entries:
        interior = text[node.start + 1 : close]
        multiline = (
            target.entry is None or _first_on_line(text, target.entry.start) or "\n" in interior
        )
        if not multiline:  # `"src": []` inside a one-line object stays on the line
            sep = "" if interior.strip(_WS) == "" else " "
            at = node.start + 1 if sep == "" else node.inner_last
            return [(at, at, sep + _entry_text(key, value, None, doc))]
        if interior.strip(_WS) == "":
            # `{}` grows into a block; the newline before the closing bracket is dropped again on
            # removal exactly when the blank interior left over is made of such newlines.
            indent = outer + doc.indent_unit
            extra = nl + outer if _chunks(interior, nl + outer) is not None else ""
            entry = nl + indent + _entry_text(key, value, indent, doc) + extra
            return [(node.start + 1, node.start + 1, entry)]
        # Only comments inside: indent like the last comment's line when that is deeper.
        indent = _line_indent(text, node.inner_last - 1)
        if not (indent.startswith(outer) and len(indent) > len(outer)):
            indent = outer + doc.indent_unit
        entry = nl + indent + _entry_text(key, value, indent, doc)
        return [(node.inner_last, node.inner_last, entry)]
    last = node.entries[-1]
    edits: list[_Edit] = []
    if last.comma is None:
        edits.append((last.value.end, last.value.end, ","))
    trailing = "," if last.comma is not None else ""
    indent = _line_indent(text, last.start)
    if _first_on_line(text, last.start):
        entry = nl + indent + _entry_text(key, value, indent, doc) + trailing
    elif node.inner_last in doc.line_comment_ends:
        # A one-line container whose last token is a `//` comment: a new line, or it swallows us.
        entry = nl + indent + _entry_text(key, value, None, doc) + trailing
    else:
        entry = " " + _entry_text(key, value, None, doc) + trailing
    edits.append((node.inner_last, node.inner_last, entry))
    return edits


def _remove_edits(doc: Document, container: Node, index: int) -> list[_Edit]:
    """Edits that take entry ``index`` out of ``container`` (see :func:`_insert_edits`).

    The entry goes from the end of the token before it to its comma: comments before it stay
    (they may describe what follows), comments inside it go with it.
    """
    text, entries = doc.text, container.entries
    entry = entries[index]
    start, end = entry.before, entry.end
    if (
        index == 0
        and len(entries) > 1
        and start == container.start + 1
        and entries[1].before == end
        and "\n" not in text[start : entries[1].start]
    ):
        # `{"a": 1, "b": 2}` without "a" is `{"b": 2}`, not `{ "b": 2}`.
        return [(entry.start, entries[1].start, "")]
    if start in doc.line_comment_ends and text[end : end + 1] not in ("\n", "\r"):
        # Keep the line break that ends a `//` comment, or the comment would swallow what follows.
        start += 2 if text.startswith("\r\n", start) else 1
    edits: list[_Edit] = [(start, end, "")]
    if index == len(entries) - 1 and entry.comma is None and index > 0:
        previous = entries[index - 1]
        assert previous.comma is not None
        edits.append((previous.comma, previous.comma + 1, ""))
    if len(entries) == 1:
        close = container.end - 1
        rest = text[container.start + 1 : start] + text[end:close]
        chunk = doc.newline + _line_indent(text, container.start)
        if _chunks(rest, chunk):  # blank interior of newline+indent chunks: drop the one we added
            edits = [(container.start + 1, close, rest[len(chunk) :])]
    return edits


def _replace_edits(doc: Document, found: Found, value: Any) -> list[_Edit]:
    """Edits that put ``value`` in place of the value ``found``; its key and comments stay."""
    text, node = doc.text, found.node
    at = node.start if found.entry is None else found.entry.start
    if node.entries and "\n" not in text[node.start : node.end]:
        rendered = _compact(value)  # a one-line object or array stays on one line
    elif "\n" in text[node.start : node.end] or _first_on_line(text, at):
        rendered = _pretty(value, _line_indent(text, at), doc.indent_unit, doc.newline)
    else:
        rendered = _compact(value)
    return [(node.start, node.end, rendered)]


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


# Named like the hujson vocabulary (find / set / remove) and called as hujson.set; inside this
# module the builtin is builtins.set.
def set(
    doc: str | Document,
    path: Sequence[Segment],
    value: Any,
    *,
    create_parents: bool = False,
) -> str:
    """The text with the value at ``path`` replaced by ``value``, or the member added.

    An existing value equal to ``value`` (types included) leaves the text as it is. A missing last
    member is added at the end of its object, spelled as the caller's segment; missing objects
    before it are created too with ``create_parents`` (else :class:`PathNotFoundError`). A missing
    array index is a :class:`PathNotFoundError` (use :func:`append`). Every byte outside the
    replaced value (or the added member) is kept, and removing the first part of ``path`` that was
    missing gives back the original bytes.
    """
    document = _document(doc)
    full = _as_path(path)
    _check_value(value, len(full))
    chain, missing = _walk(document, full)
    if missing is None:
        found = chain[-1]
        if _same(found.value, value):
            return document.text
        return _apply(document.text, _replace_edits(document, found, value))
    parent, rest = chain[-1], full[missing:]
    for i, segment in enumerate(rest):
        if isinstance(segment, int):
            at = full[: missing + i + 1]
            why = "does not exist" if i == 0 else "cannot be created (only objects are)"
            raise PathNotFoundError(
                f'"{format_path(at)}" {why}; use append() to add an array element', at
            )
    if len(rest) > 1 and not create_parents:
        raise PathNotFoundError(
            f'"{format_path(full[: missing + 1])}" does not exist '
            "(pass create_parents=True to create it)",
            full[: missing + 1],
        )
    for segment in reversed(rest[1:]):
        value = {_spelling(segment): value}
    edits = _insert_edits(document, parent, _spelling(rest[0]), value)
    return _apply(document.text, edits)


def remove(doc: str | Document, path: Sequence[Segment]) -> str:
    """The text without the member or array element at ``path`` (unchanged when it is missing).

    Exact inverse of adding it at the end with :func:`set` or :func:`append`: the original bytes
    come back. Comments inside the entry go with it; comments before it stay. (tailscale/hujson's
    patch moves those along with the member, hujson@ecc657c/patch.go:285-314; here removal must
    undo an insertion exactly and never drop words a user wrote outside the entry.)
    """
    document = _document(doc)
    full = _as_path(path)
    if not full:
        raise PathError("cannot remove the top-level value", full)
    chain, missing = _walk(document, full)
    if missing is not None:
        return document.text
    found = chain[-1]
    assert found.index is not None
    return _apply(document.text, _remove_edits(document, chain[-2].node, found.index))


def append(
    doc: str | Document, path: Sequence[Segment], value: Any, *, create_parents: bool = False
) -> str:
    """The text with ``value`` added as the last element of the array at ``path``.

    ``remove(result, (*path, -1))`` gives back the original bytes. A missing array is created
    (``[value]``) with ``create_parents``, else :class:`PathNotFoundError`.
    """
    document = _document(doc)
    full = _as_path(path)
    _check_value(value, len(full) + 1)
    chain, missing = _walk(document, full)
    if missing is not None:
        if not create_parents:
            raise PathNotFoundError(
                f'"{format_path(full[: missing + 1])}" does not exist '
                "(pass create_parents=True to create it)",
                full[: missing + 1],
            )
        return set(document, full, [value], create_parents=True)
    found = chain[-1]
    if found.kind != "array":
        raise found.type_error("an array")
    return _apply(document.text, _insert_edits(document, found, None, value))
