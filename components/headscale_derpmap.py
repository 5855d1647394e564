"""This stack's region in headscale's DERP map YAML file, edited by text splice (no I/O).

headscale reads each file of ``derp.paths`` with yaml.v3 into ``tailcfg.DERPMap``
(docs/upstream/headscale.md#derp-paths). yaml.v3 matches a struct field by its lower-cased Go
name only (``regions``, ``regionid``, ``hostname``, ``nomeasurenohome`` …), silently ignores any
other key, and reads region ids as integers: a quoted ``"900"`` key fails the whole file
(docs/upstream/headscale.md#yaml-keys). So a file is accepted only when it is a DERP map headscale
can read, and our region is written in exactly that spelling.

The file is the user's: comments, layout, other regions. A load/modify/dump round trip would
re-emit it in the dumper's style, so instead ruamel.yaml (a maintained round-trip YAML library)
parses the file and gives each node's character offsets, and the edit replaces, inserts or
removes exactly the characters of our entry (``<id>: <region>``). Every other byte stays, and
inserting then removing our region gives back the original text. Block and flow style are both
kept in the style the ``regions`` mapping already has. Inside our entry the bytes are ours: a
publish, a drain (``nomeasurenohome: true``, docs/upstream/derpmap.md#no-measure-no-home) and a
restore re-render it whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from components import derpmap
from components.errors import HomeDerpError

#: The keys of tailcfg.DERPMap as yaml.v3 names them (lower-cased field names).
DERP_MAP_KEYS: Final = ("regions", "omitdefaultregions", "homeparams")
#: The drain flag as yaml.v3 spells DERPRegion.NoMeasureNoHome.
DRAIN_KEY: Final = "nomeasurenohome"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_STEP: Final = 2


class DerpFileError(HomeDerpError):
    """The file is not a DERP map headscale can read, or our entry cannot be edited safely."""


def yaml_keys(region: Mapping[str, Any]) -> dict[str, Any]:
    """A region as the policy spells it (``RegionID``, ``HostName`` …) → headscale's YAML
    spelling (``regionid``, ``hostname``): yaml.v3's lower-cased Go field names, in the policy's
    key order whatever order the engine delivered (``derpmap.in_policy_order``), so the same
    region is always the same bytes and a restore gives back exactly the published entry."""
    return dict(_lower(derpmap.in_policy_order(region)))


def _lower(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lower(v) for v in value]
    return value


def region_drained(live: Mapping[str, Any]) -> bool:
    return live.get(DRAIN_KEY) is True


def without_drain(live: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in live.items() if k != DRAIN_KEY}


def drained(region: Mapping[str, Any]) -> dict[str, Any]:
    """The region (YAML spelling) with the drain flag as its last member."""
    return {**without_drain(region), DRAIN_KEY: True}


# ---------------------------------------------------------------------------------------------
# Parsing: the whole file checked, our entry located


@dataclass(frozen=True)
class _Entry:
    key: ScalarNode
    value: Node
    start: int
    """Offset of the region key."""
    end: int
    """Offset just after the last character of the region's value (comments after it excluded)."""


@dataclass(frozen=True)
class _Parsed:
    text: str
    data: dict[str, Any] | None
    root: MappingNode | None
    regions_key: ScalarNode | None
    regions: Node | None
    entries: dict[int, _Entry]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a YAML flow scalar


def _content_end(node: Node) -> int:
    """Where the node's own text ends: a block collection's end mark lies past the comments and
    blank lines that follow it, so take the last scalar or flow collection inside it."""
    if isinstance(node, ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    else:
        children = []
    if not children:
        return int(node.end_mark.index)
    return max(_content_end(child) for child in children)


def _nodes(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield from _nodes(key)
            yield from _nodes(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _nodes(item)


def parse(text: str) -> _Parsed:
    """Check that ``text`` is a DERP map headscale can read and locate every region entry."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
        root = YAML(typ="rt").compose(text)
    except YAMLError as exc:
        raise DerpFileError(f"not YAML headscale can read: {_first_line(exc)}") from None
    if data is None:
        return _Parsed(text, None, None, None, None, {})
    if not isinstance(data, dict) or not isinstance(root, MappingNode):
        raise DerpFileError("not a DERP map: the top level must be a mapping (regions: …)")
    for key in data:
        if key not in DERP_MAP_KEYS:
            raise DerpFileError(
                f"not a DERP map: unknown top-level key {key!r}. headscale reads the lower-case "
                f"field names of tailcfg.DERPMap ({', '.join(DERP_MAP_KEYS)}) and ignores "
                "anything else (see derp-example.yaml)"
            )
    regions_key, regions = next(
        ((k, v) for k, v in root.value if isinstance(k, ScalarNode) and k.value == "regions"),
        (None, None),
    )
    entries: dict[int, _Entry] = {}
    if isinstance(regions, MappingNode):
        for key, value in regions.value:
            if not isinstance(key, ScalarNode) or key.tag != _INT_TAG:
                raise DerpFileError(
                    f"region key {getattr(key, 'value', key)!r} (line {key.start_mark.line + 1}) "
                    "is not an integer: headscale reads region ids as integers and refuses the "
                    "whole file (write it unquoted, e.g. 900:)"
                )
            region_id = _int(key.value)
            entries[region_id] = _Entry(key, value, key.start_mark.index, _content_end(value))
    elif regions is not None and not (isinstance(regions, ScalarNode) and regions.tag == _NULL_TAG):
        raise DerpFileError("not a DERP map: regions must be a mapping of region id to region")
    for region_id, value in (data.get("regions") or {}).items():
        if value is not None and not isinstance(value, dict):
            raise DerpFileError(f"not a DERP map: region {region_id} is not a mapping")
    return _Parsed(text, data, root, regions_key, regions, entries)


def _int(text: str) -> int:
    return int(YAML(typ="safe", pure=True).load(text))


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def find_region(text: str, region_id: int) -> dict[str, Any] | None:
    """Our entry as headscale reads it (``{}`` for a ``null`` entry), or None when absent."""
    parsed = parse(text)
    if region_id not in parsed.entries:
        return None
    value = (parsed.data or {}).get("regions", {}).get(region_id)
    return dict(value) if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------
# Rendering our entry in the style of the mapping it sits in


def _flow(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _block(value: Mapping[str, Any], indent: int) -> list[str]:
    lines = []
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, Mapping):
            lines += [f"{pad}{key}:", *_block(item, indent + _STEP)]
        elif isinstance(item, list):
            lines.append(f"{pad}{key}:")
            for element in item:
                if isinstance(element, Mapping):
                    inner = _block(element, indent + _STEP * 2)
                    first = inner[0][indent + _STEP * 2 :]
                    lines += [f"{pad}{' ' * _STEP}- {first}", *inner[1:]]
                else:
                    lines.append(f"{pad}{' ' * _STEP}- {_scalar(element)}")
        else:
            lines.append(f"{pad}{key}: {_scalar(item)}")
    return lines


def render_entry(region_id: int, region: Mapping[str, Any], *, flow: bool, column: int) -> str:
    """``<id>: <region>``; block lines after the first are indented from ``column``."""
    if flow:
        return f"{region_id}: {_flow(region)}"
    return "\n".join([f"{region_id}:", *_block(region, column + _STEP)])


# ---------------------------------------------------------------------------------------------
# Edits


def _line_end(text: str, index: int) -> int:
    """The offset just after the newline that ends the line holding ``index`` (or the end)."""
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _guard_entry(parsed: _Parsed, entry: _Entry) -> None:
    if entry.value.start_mark.index < entry.start:
        raise DerpFileError(
            f"region {entry.key.value} is a YAML alias of another node: edit it by hand"
        )
    if any(getattr(n, "anchor", None) for n in _nodes(entry.value)):
        raise DerpFileError(
            f"region {entry.key.value} defines a YAML anchor that other entries may use: edit "
            "it by hand"
        )


def set_region(text: str, region_id: int, region: Mapping[str, Any]) -> str:
    """The file with our entry set to ``region`` (YAML spelling); every other byte kept, and our
    lines ending as the file's do."""
    parsed = parse(text)
    entry = parsed.entries.get(region_id)
    flow = bool(getattr(parsed.regions, "flow_style", False))
    if entry is not None:
        _guard_entry(parsed, entry)
        rendered = render_entry(region_id, region, flow=flow, column=entry.key.start_mark.column)
        return _file_line_endings(text, text[: entry.start] + rendered + text[entry.end :])
    return _file_line_endings(text, _insert(parsed, region_id, region))


def _file_line_endings(original: str, edited: str) -> str:
    """``edited`` with CRLF line ends when every line of ``original`` ends so (a file written on
    Windows): our lines are rendered with LF, and a file of mixed endings is left as it is."""
    crlf = original.count("\r\n")
    if not crlf or crlf != original.count("\n"):
        return edited
    return edited.replace("\r\n", "\n").replace("\n", "\r\n")


def _insert(parsed: _Parsed, region_id: int, region: Mapping[str, Any]) -> str:
    text = parsed.text
    regions = parsed.regions
    if isinstance(regions, MappingNode) and regions.flow_style:
        close = int(regions.end_mark.index) - 1  # the closing brace
        rendered = render_entry(region_id, region, flow=True, column=0)
        joiner = ", " if parsed.entries else ""
        return text[:close] + joiner + rendered + text[close:]
    if isinstance(regions, MappingNode) and parsed.entries:
        column = min(e.key.start_mark.column for e in parsed.entries.values())
        last = max(parsed.entries.values(), key=lambda e: e.end)
        at = _line_end(text, last.end)
        rendered = " " * column + render_entry(region_id, region, flow=False, column=column)
        prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
        return text[:at] + prefix + rendered + "\n" + text[at:]
    if parsed.regions_key is not None and regions is not None:
        # `regions:` with no value (null): our entry goes on the lines below it.
        column = parsed.regions_key.start_mark.column + _STEP
        start, end = int(regions.start_mark.index), int(regions.end_mark.index)
        rendered = " " * column + render_entry(region_id, region, flow=False, column=column)
        at = _line_end(text, parsed.regions_key.end_mark.index)
        if end > start:  # an explicit `null` or `~`: drop that word, keep the line
            text, at = text[:start] + text[end:], at - (end - start)
        prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
        return text[:at] + prefix + rendered + "\n" + text[at:]
    if parsed.root is not None and parsed.root.flow_style:
        close = int(parsed.root.end_mark.index) - 1
        rendered = render_entry(region_id, region, flow=True, column=0)
        joiner = ", " if parsed.root.value else ""
        return text[:close] + f"{joiner}regions: {{{rendered}}}" + text[close:]
    block = "regions:\n" + " " * _STEP + render_entry(region_id, region, flow=False, column=_STEP)
    prefix = "" if not text or text.endswith("\n") else "\n"
    return text + prefix + block + "\n"


def created_regions_key(text: str) -> bool:
    """True when the file has no ``regions`` key yet: publishing adds it, so it is ours."""
    return parse(text).regions_key is None


def remove_region(text: str, region_id: int, *, remove_empty_regions: bool = False) -> str:
    """The file without our entry; every other byte kept (a no-op when it is absent).

    ``remove_empty_regions``: the ``regions:`` line was added with our entry (block style), so it
    goes too once no region is left.
    """
    parsed = parse(text)
    entry = parsed.entries.get(region_id)
    if entry is None:
        return text
    text = _remove_entry(parsed, entry, region_id)
    after = parse(text)
    if remove_empty_regions and not after.entries and after.regions_key is not None:
        value = after.regions
        empty = isinstance(value, ScalarNode) and value.start_mark.index == value.end_mark.index
        if empty:
            start = text.rfind("\n", 0, after.regions_key.start_mark.index) + 1
            text = text[:start] + text[_line_end(text, after.regions_key.end_mark.index) :]
    return text


def _remove_entry(parsed: _Parsed, entry: _Entry, region_id: int) -> str:
    text = parsed.text
    _guard_entry(parsed, entry)
    if getattr(parsed.regions, "flow_style", False):
        after = text[entry.end :]
        stripped = after.lstrip(" \t\r\n")
        if stripped.startswith(","):
            cut = entry.end + (len(after) - len(stripped)) + 1
            while cut < len(text) and text[cut] in " \t":
                cut += 1
            return text[: entry.start] + text[cut:]
        before = text[: entry.start].rstrip(" \t\r\n")
        if before.endswith(","):
            return before[:-1] + text[entry.end :]
        return text[: entry.start] + text[entry.end :]
    line_start = text.rfind("\n", 0, entry.start) + 1
    if text[line_start : entry.start].strip():
        raise DerpFileError(f"region {region_id} shares its line with other YAML: edit by hand")
    return text[:line_start] + text[_line_end(text, entry.end) :]


def regions_summary(text: str) -> list[int]:
    """The region ids the file defines (null entries included), in file order."""
    return list(parse(text).entries)
