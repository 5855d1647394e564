"""The relay's derpMap region: a pure model, its policy fragment, and HuJSON splicing.

No Pulumi, no I/O: the stack output ``derpMapFragment``, the ``file`` policy mode and the
``TailnetDerpRegion`` dynamic provider all build on these functions (issue #2 item 7, issue #4).
Field names and meanings: ``reference/derp.md`` §6.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DerpNode",
    "DerpRegion",
    "PolicyTextError",
    "SpliceResult",
    "derp_map_fragment",
    "find_region",
    "fragment_text",
    "home_region",
    "parse_hujson",
    "region_to_dict",
    "remove_region",
    "set_omit_default_regions",
    "splice_region",
]


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerpNode:
    """One derper node of a region (a ``Nodes`` entry of the derpMap)."""

    name: str
    """``Name``: unique across all regions, not a hostname (``"900a"``)."""
    region_id: int
    """``RegionID``: must be set and equal the region's (tailscale/tailscale#9526, #17563)."""
    host_name: str
    """``HostName``: DNS name, TLS SNI and certificate name."""
    derp_port: int
    """``DERPPort``: the HTTPS port derper listens on."""
    stun_port: int
    """``STUNPort``: the UDP STUN port."""
    ipv4: str | None = None
    """``IPv4``: ``"none"`` (no A record: clients must not dial or look up v4), an address, or
    ``None`` to leave the field out (clients resolve ``HostName``)."""
    ipv6: str | None = None
    """``IPv6``: a pinned address, or ``None`` to leave it out (a pin goes stale when the ISP
    changes the prefix)."""


@dataclass(frozen=True)
class DerpRegion:
    """One derpMap region (``Regions."<id>"``)."""

    region_id: int
    region_code: str
    region_name: str
    nodes: tuple[DerpNode, ...]


def home_region(
    *,
    region_id: int,
    region_code: str,
    region_name: str,
    hostname: str,
    derp_port: int,
    stun_port: int,
    ipv4: str | None,
    ipv6: str | None,
    pin_ipv6: bool,
) -> DerpRegion:
    """The single-node region of a home relay.

    ``IPv4`` is ``"none"`` when the relay has no A record, so IPv6-only relays are never dialled
    over v4 (tailscale/tailscale#17563); ``IPv6`` is pinned only on request because a home prefix
    changes (DESIGN.md decisions).
    """
    node = DerpNode(
        name=f"{region_id}a",
        region_id=region_id,
        host_name=hostname,
        derp_port=derp_port,
        stun_port=stun_port,
        ipv4="none" if ipv4 is None else ipv4,
        ipv6=ipv6 if pin_ipv6 else None,
    )
    return DerpRegion(
        region_id=region_id, region_code=region_code, region_name=region_name, nodes=(node,)
    )


def node_to_dict(node: DerpNode) -> dict[str, Any]:
    """A node in the policy's key order (Name, RegionID, HostName, IPv4?, IPv6?, ports)."""
    out: dict[str, Any] = {
        "Name": node.name,
        "RegionID": node.region_id,
        "HostName": node.host_name,
    }
    if node.ipv4 is not None:
        out["IPv4"] = node.ipv4
    if node.ipv6 is not None:
        out["IPv6"] = node.ipv6
    out["DERPPort"] = node.derp_port
    out["STUNPort"] = node.stun_port
    return out


def region_to_dict(region: DerpRegion) -> dict[str, Any]:
    """A region as the policy file spells it (key order RegionID, RegionCode, RegionName, Nodes)."""
    return {
        "RegionID": region.region_id,
        "RegionCode": region.region_code,
        "RegionName": region.region_name,
        "Nodes": [node_to_dict(n) for n in region.nodes],
    }


def derp_map_fragment(region: DerpRegion, *, omit_default_regions: bool) -> dict[str, Any]:
    """``{"derpMap": {"OmitDefaultRegions": b, "Regions": {"<id>": region}}}``."""
    return {
        "derpMap": {
            "OmitDefaultRegions": omit_default_regions,
            "Regions": {str(region.region_id): region_to_dict(region)},
        }
    }


def fragment_text(fragment: dict[str, Any]) -> str:
    """Pretty JSON of a fragment, ready to paste into a policy file (valid HuJSON too)."""
    return json.dumps(fragment, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# HuJSON splicing (step 2)
# --------------------------------------------------------------------------------------------


class PolicyTextError(ValueError):
    """The policy text is not HuJSON we can splice safely; nothing was written."""


@dataclass(frozen=True)
class SpliceResult:
    """The outcome of :func:`splice_region`."""

    text: str
    """The new policy text."""
    created_derp_map: bool
    """True when ``derpMap`` was absent and this splice created it."""
    replaced: dict[str, Any] | None
    """The region that was there before under the same ID, or None."""


# The scanner below is a recursive-descent HuJSON parser (JSON + `//` and `/* */` comments +
# trailing commas, https://github.com/tailscale/hujson) that keeps the character span of every
# value, member key and comma. Edits are then plain string splices, so every character we do not
# mean to change is copied through untouched (issue #4: users keep their comments and layout).

_WS = " \t\n\r"
_MAX_DEPTH = 256
_NUMBER_START = "-0123456789"


@dataclass
class _Node:
    kind: str  # "object" | "array" | "scalar"
    start: int
    end: int  # exclusive; for containers one past the closing bracket
    value: Any = None  # scalars only
    members: list[_Member] | None = None  # objects only
    items: list[_Node] | None = None  # arrays only
    inner_last: int = 0  # containers: end of the last non-blank token before the closing bracket
    line_comment_ends: frozenset[int] = frozenset()  # root only: where `//` comments end


@dataclass
class _Member:
    key: str
    key_start: int
    before: int  # end of the last non-blank token (comma, comment or "{") before the key
    value: _Node
    comma: int | None  # index of the comma after the value, if any


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.sig_end = 0  # end of the last non-whitespace token (comments included)
        self.line_comment_ends: set[int] = set()  # a newline must follow these positions

    def error(self, what: str, pos: int | None = None) -> PolicyTextError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return PolicyTextError(
            f"policy file is not valid HuJSON: {what} at line {line}, column {col}"
        )

    def skip_trivia(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in _WS:
                self.pos += 1
            elif text.startswith("//", self.pos):
                nl = text.find("\n", self.pos)
                self.pos = n if nl < 0 else nl
                if nl >= 0 and text[nl - 1] == "\r":
                    self.pos = nl - 1  # a CRLF ends the comment; the CR is whitespace
                self.sig_end = self.pos
                self.line_comment_ends.add(self.pos)
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self.error("unterminated /* comment")
                self.pos = close + 2
                self.sig_end = self.pos
            else:
                return

    def parse_document(self) -> _Node:
        if self.text.startswith("\ufeff"):
            self.pos = self.sig_end = 1
        self.skip_trivia()
        if self.pos >= len(self.text):
            raise self.error("empty document")
        node = self.parse_value(0)
        self.skip_trivia()
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.text[self.pos]!r} after the top-level value")
        node.line_comment_ends = frozenset(self.line_comment_ends)
        return node

    def parse_value(self, depth: int) -> _Node:
        if depth > _MAX_DEPTH:
            raise self.error("nesting too deep")
        if self.pos >= len(self.text):
            raise self.error("unexpected end of text, expected a value")
        ch = self.text[self.pos]
        if ch == "{":
            return self.parse_object(depth)
        if ch == "[":
            return self.parse_array(depth)
        start = self.pos
        if ch == '"':
            value = self.parse_string()
            return _Node("scalar", start, self.pos, value=value)
        if ch in _NUMBER_START:
            return self.parse_number()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                nxt = self.text[self.pos : self.pos + 1]
                if nxt.isalnum() or nxt == "_":
                    self.pos = start
                    raise self.error(f"unknown literal starting {word!r}")
                self.sig_end = self.pos
                return _Node("scalar", start, self.pos, value=val)
        raise self.error(f"unexpected {ch!r}, expected a value")

    def parse_string(self) -> str:
        text, start = self.text, self.pos
        i = start + 1
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == '"':
                break
            if ch == "\\":
                esc = text[i + 1 : i + 2]
                if esc == "u":
                    hexd = text[i + 2 : i + 6]
                    if len(hexd) != 4 or any(c not in "0123456789abcdefABCDEF" for c in hexd):
                        raise self.error("bad \\u escape in string", i)
                    i += 6
                    continue
                if esc == "" or esc not in '"\\/bfnrt':
                    raise self.error("bad escape in string", i)
                i += 2
                continue
            if ch < " ":
                raise self.error("control character in string", i)
            i += 1
        else:
            raise self.error("unterminated string", start)
        self.pos = self.sig_end = i + 1
        # The span holds only JSON string syntax now, so the stdlib decodes it exactly.
        decoded: str = json.loads(text[start : i + 1])
        return decoded

    def parse_number(self) -> _Node:
        text, start = self.text, self.pos
        i = start
        n = len(text)
        if text[i] == "-":
            i += 1
        if i < n and text[i] == "0":
            i += 1
        elif i < n and text[i].isdigit() and text[i].isascii():
            while i < n and text[i] in "0123456789":
                i += 1
        else:
            raise self.error("bad number", start)
        if i < n and text[i] == ".":
            i += 1
            if not (i < n and text[i] in "0123456789"):
                raise self.error("bad number", start)
            while i < n and text[i] in "0123456789":
                i += 1
        if i < n and text[i] in "eE":
            i += 1
            if i < n and text[i] in "+-":
                i += 1
            if not (i < n and text[i] in "0123456789"):
                raise self.error("bad number", start)
            while i < n and text[i] in "0123456789":
                i += 1
        if i < n and (text[i].isalnum() or text[i] in "._"):
            raise self.error("bad number", start)
        self.pos = self.sig_end = i
        return _Node("scalar", start, i, value=json.loads(text[start:i]))

    def parse_object(self, depth: int) -> _Node:
        start = self.pos
        self.pos = self.sig_end = start + 1
        members: list[_Member] = []
        while True:
            self.skip_trivia()
            if self.pos >= len(self.text):
                raise self.error("unterminated object", start)
            ch = self.text[self.pos]
            if ch == "}":
                inner_last = self.sig_end
                self.pos = self.sig_end = self.pos + 1
                return _Node("object", start, self.pos, members=members, inner_last=inner_last)
            if members and members[-1].comma is None:
                raise self.error("expected ',' or '}' in object")
            if ch != '"':
                raise self.error(f"unexpected {ch!r}, expected a quoted key or '}}'")
            before, key_start = self.sig_end, self.pos
            key = self.parse_string()
            self.skip_trivia()
            if self.text[self.pos : self.pos + 1] != ":":
                raise self.error("expected ':' after object key")
            self.pos = self.sig_end = self.pos + 1
            self.skip_trivia()
            value = self.parse_value(depth + 1)
            self.skip_trivia()
            comma = None
            if self.text[self.pos : self.pos + 1] == ",":
                comma = self.pos
                self.pos = self.sig_end = self.pos + 1
            members.append(_Member(key, key_start, before, value, comma))

    def parse_array(self, depth: int) -> _Node:
        start = self.pos
        self.pos = self.sig_end = start + 1
        items: list[_Node] = []
        expect_value = True
        while True:
            self.skip_trivia()
            if self.pos >= len(self.text):
                raise self.error("unterminated array", start)
            ch = self.text[self.pos]
            if ch == "]":
                inner_last = self.sig_end
                self.pos = self.sig_end = self.pos + 1
                return _Node("array", start, self.pos, items=items, inner_last=inner_last)
            if not expect_value:
                raise self.error("expected ',' or ']' in array")
            items.append(self.parse_value(depth + 1))
            self.skip_trivia()
            expect_value = False
            if self.text[self.pos : self.pos + 1] == ",":
                self.pos = self.sig_end = self.pos + 1
                expect_value = True


def _to_python(node: _Node) -> Any:
    if node.kind == "object":
        assert node.members is not None
        # Last duplicate wins, as in Go's encoding/json that reads the standardized policy.
        return {m.key: _to_python(m.value) for m in node.members}
    if node.kind == "array":
        assert node.items is not None
        return [_to_python(item) for item in node.items]
    return node.value


def _parse(text: str) -> _Node:
    if not isinstance(text, str):
        raise PolicyTextError(f"policy file must be text, got {type(text).__name__}")
    return _Parser(text).parse_document()


def parse_hujson(text: str) -> Any:
    """HuJSON text → Python values (comments and trailing commas allowed, JSON otherwise)."""
    return _to_python(_parse(text))


# --- splicing ---------------------------------------------------------------------------------

_Edit = tuple[int, int, str]  # (start, end, replacement)


def _apply(text: str, edits: list[_Edit]) -> str:
    # Right to left keeps earlier spans valid; at one position the first-listed edit ends up first.
    order = sorted(range(len(edits)), key=lambda i: (edits[i][0], i), reverse=True)
    for i in order:
        start, end, repl = edits[i]
        text = text[:start] + repl + text[end:]
    return text


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


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


def _indent_unit(text: str, root: _Node) -> str:
    """The document's indentation step, read from the first member that sits on its own line.

    Policies written in the admin console use tabs; hand-written ones often use 2 or 4 spaces.
    """
    stack = [root]
    while stack:
        node = stack.pop(0)
        for member in node.members or ():
            if _first_on_line(text, member.key_start):
                parent = _line_indent(text, node.start)
                own = _line_indent(text, member.key_start)
                if own.startswith(parent) and len(own) > len(parent):
                    return own[len(parent) :]
            stack.append(member.value)
        stack.extend(node.items or ())
    return "\t"


def _render(value: Any, indent: str, unit: str, nl: str) -> str:
    """Pretty JSON for ``value`` whose first line continues a line indented by ``indent``."""
    inner = indent + unit
    if isinstance(value, dict) and value:
        rows = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_render(v, inner, unit, nl)}"
            for k, v in value.items()
        ]
        return "{" + nl + ("," + nl).join(rows) + nl + indent + "}"
    if isinstance(value, list) and value:
        rows = [inner + _render(v, inner, unit, nl) for v in value]
        return "[" + nl + ("," + nl).join(rows) + nl + indent + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _member_text(key: str, value: Any, indent: str | None, unit: str, nl: str) -> str:
    quoted = json.dumps(key, ensure_ascii=False)
    if indent is None:
        return f"{quoted}: {_compact(value)}"
    return f"{quoted}: {_render(value, indent, unit, nl)}"


def _blank_chunks(gap: str, chunk: str) -> int | None:
    """How many times ``gap`` repeats ``chunk`` exactly (0 for ""), or None."""
    if gap == "":
        return 0
    if chunk and len(gap) % len(chunk) == 0 and gap == chunk * (len(gap) // len(chunk)):
        return len(gap) // len(chunk)
    return None


def _insert_member(
    text: str, obj: _Node, key: str, value: Any, unit: str, line_comment_ends: frozenset[int]
) -> list[_Edit]:
    """Edits that append ``"key": value`` as the last member of ``obj``.

    Designed as the exact inverse of :func:`_remove_member` so insert-then-remove gives back the
    original bytes (issue #4): the new member goes right after the last token before ``}``,
    preceded only by a newline and indentation, and a comma is added after the previous value
    only when the object had no trailing comma (then it is taken away again on removal).
    """
    assert obj.members is not None
    nl = _newline(text)
    close = obj.end - 1
    outer = _line_indent(text, obj.start)
    if not obj.members:
        interior = text[obj.start + 1 : close]
        if interior.strip(_WS) == "":
            # `{}` grows to a pretty multi-line block; the extra newline is dropped again on
            # removal exactly when the remaining blank interior is made of such newlines.
            indent = outer + unit
            extra = nl + outer if _blank_chunks(interior, nl + outer) is not None else ""
            member = nl + indent + _member_text(key, value, indent, unit, nl) + extra
            return [(obj.start + 1, obj.start + 1, member)]
        # Only comments inside: indent like the last comment line when it is indented deeper.
        indent = _line_indent(text, obj.inner_last - 1)
        if not (indent.startswith(outer) and len(indent) > len(outer)):
            indent = outer + unit
        member = nl + indent + _member_text(key, value, indent, unit, nl)
        return [(obj.inner_last, obj.inner_last, member)]
    last = obj.members[-1]
    edits: list[_Edit] = []
    if last.comma is None:
        edits.append((last.value.end, last.value.end, ","))
    trailing = "," if last.comma is not None else ""
    if _first_on_line(text, last.key_start):
        indent = _line_indent(text, last.key_start)
        member = nl + indent + _member_text(key, value, indent, unit, nl) + trailing
    else:
        # One-line object: stay on the line, unless a `//` comment ends there (it would swallow us).
        sep = nl if obj.inner_last in line_comment_ends else " "
        member = sep + _member_text(key, value, None, unit, nl) + trailing
    edits.append((obj.inner_last, obj.inner_last, member))
    return edits


def _remove_member(
    text: str, obj: _Node, index: int, line_comment_ends: frozenset[int]
) -> list[_Edit]:
    """Edits that take member ``index`` out of ``obj`` (see :func:`_insert_member`)."""
    assert obj.members is not None
    nl = _newline(text)
    members = obj.members
    member = members[index]
    end = member.value.end if member.comma is None else member.comma + 1
    start = member.before
    if start in line_comment_ends and text[end : end + 1] not in ("\n", "\r"):
        # Keep the line break that ends a `//` comment, or the comment would swallow what follows.
        start += 2 if text.startswith("\r\n", start) else 1
    edits: list[_Edit] = [(start, end, "")]
    is_last = index == len(members) - 1
    if is_last and member.comma is None and index > 0:
        prev = members[index - 1]
        assert prev.comma is not None
        edits.append((prev.comma, prev.comma + 1, ""))
    if len(members) == 1:
        close = obj.end - 1
        rest = text[obj.start + 1 : start] + text[end:close]
        outer = _line_indent(text, obj.start)
        chunks = _blank_chunks(rest, nl + outer)
        if chunks:  # blank interior made of newline+indent chunks: drop the one we added
            edits = [(obj.start + 1, close, rest[len(nl + outer) :])]
    return edits


def _lookup(text: str, obj: _Node, key: str, where: str) -> int | None:
    assert obj.members is not None
    found = [i for i, m in enumerate(obj.members) if m.key == key]
    if len(found) > 1:
        pos = obj.members[found[1]].key_start
        line = text.count("\n", 0, pos) + 1
        raise PolicyTextError(
            f"policy file has the key {key!r} twice in {where} (again at line {line}); "
            "fix the policy file so it is unambiguous"
        )
    return found[0] if found else None


@dataclass(frozen=True)
class _Located:
    root: _Node
    derp_map: _Member | None
    regions: _Member | None
    region_index: int | None


def _locate(text: str, region_key: str) -> _Located:
    root = _parse(text)
    if root.kind != "object":
        raise PolicyTextError("policy file must be a JSON object at the top level")
    # Duplicate top-level keys make the policy ambiguous (which `derpMap` is live?).
    assert root.members is not None
    seen: set[str] = set()
    for m in root.members:
        if m.key in seen:
            _lookup(text, root, m.key, "the top-level object")
        seen.add(m.key)
    dm_index = _lookup(text, root, "derpMap", "the top-level object")
    if dm_index is None:
        return _Located(root, None, None, None)
    derp_map = root.members[dm_index]
    if derp_map.value.kind != "object":
        raise PolicyTextError(
            f'policy file: "derpMap" must be an object, found {_kind(derp_map.value)}'
        )
    rg_index = _lookup(text, derp_map.value, "Regions", '"derpMap"')
    if rg_index is None:
        return _Located(root, derp_map, None, None)
    assert derp_map.value.members is not None
    regions = derp_map.value.members[rg_index]
    if regions.value.kind != "object":
        raise PolicyTextError(
            f'policy file: "derpMap.Regions" must be an object, found {_kind(regions.value)}'
        )
    index = _lookup(text, regions.value, region_key, '"derpMap.Regions"')
    return _Located(root, derp_map, regions, index)


def _kind(node: _Node) -> str:
    if node.kind == "array":
        return "an array"
    if node.value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number"}
    return names[type(node.value)]


def _region_key(region: dict[str, Any]) -> str:
    region_id = region.get("RegionID") if isinstance(region, dict) else None
    if isinstance(region_id, bool) or not isinstance(region_id, int):
        raise ValueError(f"region must be a dict with an integer RegionID, got {region!r}")
    return str(region_id)


def _region_value(node: _Node, key: int | str) -> dict[str, Any]:
    if node.kind != "object":
        raise PolicyTextError(
            f'policy file: "derpMap.Regions.{key}" must be an object, found {_kind(node)}'
        )
    value: dict[str, Any] = _to_python(node)
    return value


def find_region(policy_text: str, region_id: int) -> dict[str, Any] | None:
    """The region ``derpMap.Regions."<region_id>"`` of a policy text, or None."""
    found = _locate(policy_text, str(region_id))
    if found.regions is None or found.region_index is None:
        return None
    assert found.regions.value.members is not None
    return _region_value(found.regions.value.members[found.region_index].value, region_id)


def splice_region(
    policy_text: str, region: dict[str, Any], *, omit_default_regions: bool
) -> SpliceResult:
    """Insert or replace exactly ``derpMap.Regions."<RegionID>"``; every other byte is kept.

    ``derpMap`` (with ``OmitDefaultRegions``) and ``Regions`` are created when absent; an existing
    ``OmitDefaultRegions`` is left alone (other stacks' regions share it). Splicing a region that is
    already there with the same content returns the text unchanged.
    """
    key = _region_key(region)
    found = _locate(policy_text, key)
    unit = _indent_unit(policy_text, found.root)
    ends = found.root.line_comment_ends
    if found.derp_map is None:
        block = {"OmitDefaultRegions": omit_default_regions, "Regions": {key: region}}
        edits = _insert_member(policy_text, found.root, "derpMap", block, unit, ends)
        return SpliceResult(_apply(policy_text, edits), created_derp_map=True, replaced=None)
    if found.regions is None:
        edits = _insert_member(
            policy_text, found.derp_map.value, "Regions", {key: region}, unit, ends
        )
        return SpliceResult(_apply(policy_text, edits), created_derp_map=False, replaced=None)
    regions = found.regions.value
    if found.region_index is None:
        edits = _insert_member(policy_text, regions, key, region, unit, ends)
        return SpliceResult(_apply(policy_text, edits), created_derp_map=False, replaced=None)
    assert regions.members is not None
    old = regions.members[found.region_index]
    old_value = replaced = _region_value(old.value, key)
    if old_value == region and _same_types(old_value, region):
        return SpliceResult(policy_text, created_derp_map=False, replaced=replaced)
    nl = _newline(policy_text)
    if _first_on_line(policy_text, old.key_start):
        new = _render(region, _line_indent(policy_text, old.key_start), unit, nl)
    else:
        new = _compact(region)
    text = _apply(policy_text, [(old.value.start, old.value.end, new)])
    return SpliceResult(text, created_derp_map=False, replaced=replaced)


def _same_types(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and 1 from True (the policy must be what we meant)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def remove_region(policy_text: str, region_id: int, *, remove_empty_derp_map: bool) -> str:
    """Take ``derpMap.Regions."<region_id>"`` out; every other byte is kept.

    With ``remove_empty_derp_map`` (pass True only when this program created ``derpMap``), a
    ``derpMap`` left with nothing but ``OmitDefaultRegions`` and an empty ``Regions`` goes too, so
    splice-then-remove restores the original text exactly. A missing region is not an error.
    """
    key = str(region_id)
    found = _locate(policy_text, key)
    text = policy_text
    if found.regions is not None and found.region_index is not None:
        edits = _remove_member(
            text, found.regions.value, found.region_index, found.root.line_comment_ends
        )
        text = _apply(text, edits)
    if not remove_empty_derp_map:
        return text
    found = _locate(text, key)
    if found.derp_map is None:
        return text
    dm = found.derp_map.value
    assert dm.members is not None
    if any(m.key not in ("OmitDefaultRegions", "Regions") for m in dm.members):
        return text
    if found.regions is not None and found.regions.value.members:
        return text
    assert found.root.members is not None
    index = found.root.members.index(found.derp_map)
    return _apply(text, _remove_member(text, found.root, index, found.root.line_comment_ends))


def set_omit_default_regions(policy_text: str, value: bool) -> str:
    """Set an existing ``derpMap.OmitDefaultRegions`` (only for a derpMap this program created)."""
    found = _locate(policy_text, "")
    if found.derp_map is None:
        return policy_text
    dm = found.derp_map.value
    index = _lookup(policy_text, dm, "OmitDefaultRegions", '"derpMap"')
    if index is None:
        return _apply(
            policy_text,
            _insert_member(
                policy_text,
                dm,
                "OmitDefaultRegions",
                value,
                _indent_unit(policy_text, found.root),
                found.root.line_comment_ends,
            ),
        )
    assert dm.members is not None
    node = dm.members[index].value
    if node.kind == "scalar" and node.value is value:
        return policy_text
    return _apply(policy_text, [(node.start, node.end, json.dumps(value))])
