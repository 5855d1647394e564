"""The relay's derpMap region and peer-relay grant: a pure model, and their edits of a policy.

No Pulumi, no I/O: the stack output ``derpMapFragment``, the ``file`` policy mode and the
``TailnetDerpRegion`` dynamic provider all build on these functions. Field names and meanings:
docs/upstream/derpmap.md. Every edit is a path edit of ``components.hujson``, so it matches keys
the way Tailscale reads the policy (case-insensitive struct fields: ``derpMap``/``derpmap``,
``Regions``/``regions``) and keeps every byte it does not address.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from components import hujson
from components.errors import HomeDerpError
from components.hujson import IntKey

__all__ = [
    "CUSTOM_REGION_IDS",
    "NO_MEASURE_NO_HOME",
    "DerpNode",
    "DerpRegion",
    "PolicyTextError",
    "SpliceResult",
    "derp_map_fragment",
    "drain_region",
    "find_grant",
    "find_region",
    "fragment_text",
    "home_region",
    "insert_grant",
    "parse_hujson",
    "peer_relay_grant",
    "region_drained",
    "region_has_ipv4",
    "region_to_dict",
    "regions",
    "relay_node",
    "remove_grant",
    "remove_region",
    "restore_region",
    "set_omit_default_regions",
    "sole_region",
    "splice_region",
    "struct_field",
]


#: Region ids Tailscale leaves to custom relays (docs/upstream/derpmap.md#region-ids), inclusive.
CUSTOM_REGION_IDS = (900, 999)

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


def relay_node(
    *,
    region_id: int,
    index: int,
    hostname: str,
    derp_port: int,
    stun_port: int,
    ipv4: str | None,
    ipv6: str | None,
    pin_ipv6: bool,
) -> DerpNode:
    """The ``index``-th node of our region (``Name`` ``"<id>a"``, ``"<id>b"``, …).

    ``IPv4`` is ``"none"`` when the node has no A record, so it is never dialled over v4
    (tailscale/tailscale#17563), else the address. ``IPv6`` is ``"none"`` for a node without
    IPv6, pinned only on request otherwise, because a home prefix changes (docs/architecture.md,
    "Decisions").
    """
    if not 0 <= index < 26:
        raise ValueError(f"node index {index} is not 0-25")
    if ipv6 == "none":
        pinned: str | None = "none"
    else:
        pinned = ipv6 if pin_ipv6 and ipv6 else None
    return DerpNode(
        name=f"{region_id}{chr(ord('a') + index)}",
        region_id=region_id,
        host_name=hostname,
        derp_port=derp_port,
        stun_port=stun_port,
        ipv4="none" if ipv4 is None else ipv4,
        ipv6=pinned,
    )


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
    companions: tuple[DerpNode, ...] = (),
) -> DerpRegion:
    """The home relay's region: its own node first, then the meshed companion nodes.

    Clients dial a region's nodes in order and use the first that connects (docs/upstream/
    derpmap.md#region-nodes), so devices that can reach the home node stay on it and only those
    that cannot (no IPv6) move on to a companion; the mesh forwards between them.
    """
    node = relay_node(
        region_id=region_id,
        index=0,
        hostname=hostname,
        derp_port=derp_port,
        stun_port=stun_port,
        ipv4=ipv4,
        ipv6=ipv6,
        pin_ipv6=pin_ipv6,
    )
    names = [node.name, *(c.name for c in companions)]
    if len(set(names)) != len(names) or any(c.region_id != region_id for c in companions):
        raise ValueError(f"companion nodes must be in region {region_id} with distinct names")
    return DerpRegion(
        region_id=region_id,
        region_code=region_code,
        region_name=region_name,
        nodes=(node, *companions),
    )


def region_has_ipv4(region: DerpRegion | dict[str, Any]) -> bool:
    """Whether an IPv4-only client can dial some node of the region: a node whose ``IPv4`` is
    empty (DNS) or an IPv4 address (docs/upstream/derpmap.md#ip-fields)."""
    nodes = region.nodes if isinstance(region, DerpRegion) else struct_field(region, "Nodes") or []
    for node in nodes:
        value = node.ipv4 if isinstance(node, DerpNode) else struct_field(node, "IPv4")
        if struct_field(node, "STUNOnly") is True:
            continue
        if not value:
            return True
        try:
            if ipaddress.ip_address(str(value)).version == 4:
                return True
        except ValueError:
            continue  # "none" or any other string: the family is not used
    return False


def struct_field(value: Any, name: str) -> Any:
    """A struct field of a parsed policy value (a region, a node), matched as Go's encoding/json
    matches struct fields: in any case (docs/upstream/derpmap.md#case-insensitive-keys)."""
    if not isinstance(value, dict):
        return None
    return next((v for k, v in value.items() if hujson.equal_fold(k, name)), None)


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


#: The policy's key order of a region and of a node, as :func:`region_to_dict` and
#: :func:`node_to_dict` write them.
REGION_KEY_ORDER: Final = ("RegionID", "RegionCode", "RegionName", "Nodes")
NODE_KEY_ORDER: Final = ("Name", "RegionID", "HostName", "IPv4", "IPv6", "DERPPort", "STUNPort")


def _ordered(value: Mapping[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(order)}
    return {k: value[k] for k in sorted(value, key=lambda k: (rank.get(k, len(order)), k))}


def in_policy_order(region: Mapping[str, Any]) -> dict[str, Any]:
    """``region`` (policy spelling) with its keys and its nodes' keys in :func:`region_to_dict`'s
    order, whatever order they arrived in; keys it does not write follow, sorted. A dynamic
    provider gets its inputs through the engine's Go maps, which keep no order
    (docs/upstream/pulumi.md#property-order): a text rendered from them must be put in order
    first, or the same region renders differently from one run to the next."""
    out = _ordered(region, REGION_KEY_ORDER)
    nodes = out.get("Nodes")
    if isinstance(nodes, list):
        out["Nodes"] = [_ordered(n, NODE_KEY_ORDER) if isinstance(n, Mapping) else n for n in nodes]
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
# Edits of the policy text
# --------------------------------------------------------------------------------------------

#: The region flag that drains a relay: clients neither measure it nor choose it as home, but
#: still dial it for a peer homed there (docs/upstream/derpmap.md#no-measure-no-home).
NO_MEASURE_NO_HOME: Final = "NoMeasureNoHome"
#: The capability a grant gives to let its sources use a peer relay (docs/upstream/peer-relay.md).
RELAY_CAPABILITY: Final = "tailscale.com/cap/relay"

_DERP_MAP: Final = ("derpMap",)
_REGIONS: Final = ("derpMap", "Regions")
_GRANTS: Final = ("grants",)


class PolicyTextError(HomeDerpError):
    """The policy text is not HuJSON we can edit safely; nothing was written."""


def _hujson(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except hujson.HuJSONError as exc:
        raise PolicyTextError(f"policy file: {exc}") from None


@dataclass(frozen=True)
class SpliceResult:
    """The outcome of :func:`splice_region`."""

    text: str
    """The new policy text."""
    created_derp_map: bool
    """True when ``derpMap`` was absent and this splice created it."""
    replaced: dict[str, Any] | None
    """The region that was there before under the same ID, or None."""


def parse_hujson(text: str) -> Any:
    """HuJSON text → Python values (comments and trailing commas allowed, JSON otherwise)."""
    if not isinstance(text, str):
        raise PolicyTextError(f"policy file must be text, got {type(text).__name__}")
    return _hujson(hujson.loads, text)


def _region_path(region_id: int) -> tuple[str, str, IntKey]:
    return ("derpMap", "Regions", IntKey(region_id))


def _document(text: str) -> hujson.Document:
    if not isinstance(text, str):
        raise PolicyTextError(f"policy file must be text, got {type(text).__name__}")
    doc: hujson.Document = _hujson(hujson.parse, text)
    top = _hujson(hujson.find, doc, ())
    if top is None or top.kind != "object":
        raise PolicyTextError("policy file must be a JSON object at the top level")
    _hujson(hujson.check_unique_keys, doc, ())
    return doc


def _find(doc: hujson.Document, path: tuple[Any, ...], kind: str) -> hujson.Found | None:
    return _hujson(hujson.find, doc, path, kind=kind)


def _region_key(region: dict[str, Any]) -> int:
    region_id = region.get("RegionID") if isinstance(region, dict) else None
    if isinstance(region_id, bool) or not isinstance(region_id, int):
        raise ValueError(f"region must be a dict with an integer RegionID, got {region!r}")
    return region_id


def find_region(policy_text: str, region_id: int) -> dict[str, Any] | None:
    """The region ``derpMap.Regions."<region_id>"`` of a policy text, or None."""
    doc = _document(policy_text)
    _find(doc, _DERP_MAP, "object")
    _find(doc, _REGIONS, "object")
    found = _find(doc, _region_path(region_id), "object")
    value: dict[str, Any] | None = found.value if found is not None else None
    return value


def regions(policy_text: str) -> dict[int, Any]:
    """Every region of ``derpMap.Regions`` keyed as the control plane reads the map.

    ``tailcfg.DERPMap.Regions`` is a ``map[int]*DERPRegion`` (docs/upstream/derpmap.md): a key is
    parsed as Go's ``strconv.ParseInt`` parses it, so ``"0900"`` is region 900; the struct fields
    on the way match in any case. The one reader of the regions for the program, the doctor and the
    policy pack: two spellings of a field, or two keys naming one region, raise
    :class:`PolicyTextError` naming both, for all of them alike. A key that is not a number is
    reported the same way (Go refuses the whole policy).
    """
    doc = _document(policy_text)
    if _find(doc, _DERP_MAP, "object") is None:
        return {}
    _hujson(hujson.check_unique_keys, doc, _DERP_MAP)
    found = _find(doc, _REGIONS, "object")
    if found is None:
        return {}
    out: dict[int, Any] = {}
    spelled: dict[int, str] = {}
    spellings = found.keys()  # hujson.Found: the keys as the file spells them
    for key in spellings:
        number = hujson.go_int(key)
        if number is None:
            raise PolicyTextError(
                f"derpMap.Regions key {key!r} is not a region number (the control plane reads "
                "the keys as integers)"
            )
        if number in spelled:
            raise PolicyTextError(
                f"derpMap.Regions has region {number} twice ({spelled[number]!r} and {key!r}); "
                "the control plane would keep only one of them: remove the other"
            )
        spelled[number] = key
        region = _hujson(hujson.find, doc, (*_REGIONS, hujson.Key(key)))
        out[number] = region.value if region is not None else None
    return out


def _same_types(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and 1 from True (the policy must be what we meant)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def splice_region(
    policy_text: str, region: dict[str, Any], *, omit_default_regions: bool
) -> SpliceResult:
    """Insert or replace exactly ``derpMap.Regions."<RegionID>"``; every other byte is kept.

    ``derpMap`` (with ``OmitDefaultRegions``) and ``Regions`` are created when absent; an existing
    ``OmitDefaultRegions`` is left alone (other stacks' regions share it). Splicing a region that
    is already there with the same content returns the text unchanged.
    """
    region_id = _region_key(region)
    doc = _document(policy_text)
    if _find(doc, _DERP_MAP, "object") is None:
        block = {"OmitDefaultRegions": omit_default_regions, "Regions": {str(region_id): region}}
        return SpliceResult(_hujson(hujson.set, doc, _DERP_MAP, block), True, None)
    if _find(doc, _REGIONS, "object") is None:
        text = _hujson(hujson.set, doc, _REGIONS, {str(region_id): region})
        return SpliceResult(text, False, None)
    _hujson(hujson.check_unique_keys, doc, _REGIONS)
    old = _find(doc, _region_path(region_id), "object")
    replaced = old.value if old is not None else None
    if replaced is not None and _same_types(replaced, region):
        return SpliceResult(policy_text, False, replaced)
    text = _hujson(hujson.set, doc, _region_path(region_id), region)
    return SpliceResult(text, False, replaced)


def remove_region(policy_text: str, region_id: int, *, remove_empty_derp_map: bool) -> str:
    """Take ``derpMap.Regions."<region_id>"`` out; every other byte is kept.

    With ``remove_empty_derp_map`` (pass True only when this program created ``derpMap``), a
    ``derpMap`` left with nothing but ``OmitDefaultRegions`` and an empty ``Regions`` goes too, so
    splice-then-remove restores the original text exactly. A missing region is not an error.
    """
    doc = _document(policy_text)
    _find(doc, _DERP_MAP, "object")
    if _find(doc, _REGIONS, "object") is not None:
        _hujson(hujson.check_unique_keys, doc, _REGIONS)
    text: str = _hujson(hujson.remove, doc, _region_path(region_id))
    if not remove_empty_derp_map:
        return text
    doc = _document(text)
    derp_map = _find(doc, _DERP_MAP, "object")
    if derp_map is None:
        return text
    value = derp_map.value
    if any(not hujson.equal_fold(k, "OmitDefaultRegions") and not hujson.equal_fold(k, "Regions")
           for k in value):  # fmt: skip
        return text
    regions = _find(doc, _REGIONS, "object")
    if regions is not None and regions.size:
        return text
    return _hujson(hujson.remove, doc, _DERP_MAP)


def set_omit_default_regions(policy_text: str, value: bool) -> str:
    """Set ``derpMap.OmitDefaultRegions`` (only for a derpMap this program created)."""
    doc = _document(policy_text)
    if _find(doc, _DERP_MAP, "object") is None:
        return policy_text
    current = _find(doc, ("derpMap", "OmitDefaultRegions"), "boolean")
    if current is not None and current.value is value:
        return policy_text
    return _hujson(hujson.set, doc, ("derpMap", "OmitDefaultRegions"), value)


def sole_region(policy_text: str, region_id: int) -> bool:
    """True when ``OmitDefaultRegions`` is on and ``region_id`` is the derpMap's only region:
    draining it then moves nobody — netcheck measures no region, and the fallback keeps the
    current home or picks among all regions, the drained one included
    (docs/upstream/derpmap.md#one-region)."""
    derp_map = struct_field(parse_hujson(policy_text), "derpMap")
    if struct_field(derp_map, "OmitDefaultRegions") is not True:
        return False
    return set(regions(policy_text)) == {region_id}


def region_drained(region: dict[str, Any] | None) -> bool:
    """True when a region (as found in a policy) carries ``NoMeasureNoHome: true``."""
    if not isinstance(region, dict):
        return False
    return any(
        hujson.equal_fold(key, NO_MEASURE_NO_HOME) and value is True
        for key, value in region.items()
    )


def drain_region(policy_text: str, region_id: int) -> str:
    """Set ``NoMeasureNoHome: true`` on our region only; unchanged when it is already drained.

    The flag is added as the region's last member, so :func:`restore_region` gives back exactly
    the bytes before the drain.
    """
    doc = _document(policy_text)
    if _find(doc, _region_path(region_id), "object") is None:
        return policy_text
    path = (*_region_path(region_id), NO_MEASURE_NO_HOME)
    flag = _find(doc, path, "boolean")
    if flag is not None and flag.value is True:
        return policy_text
    return _hujson(hujson.set, doc, path, True)


def restore_region(policy_text: str, region_id: int) -> str:
    """Take the drain flag off our region (the exact inverse of :func:`drain_region`)."""
    doc = _document(policy_text)
    if _find(doc, _region_path(region_id), "object") is None:
        return policy_text
    return _hujson(hujson.remove, doc, (*_region_path(region_id), NO_MEASURE_NO_HOME))


# --- the peer-relay grant ---------------------------------------------------------------------


def peer_relay_grant(sources: list[str], relay: str) -> dict[str, Any]:
    """``{"src": [...], "dst": [relay], "app": {"tailscale.com/cap/relay": []}}`` (KB "Peer
    relays"; docs/upstream/peer-relay.md#grant)."""
    return {"src": list(sources), "dst": [relay], "app": {RELAY_CAPABILITY: []}}


def _marker_body(region_id: int) -> str:
    return f"home-derp: peer relay of region {region_id}; edits are overwritten by pulumi up"


def grant_marker(region_id: int) -> str:
    """The comment that marks our grant, so a user's grants are never taken for ours."""
    return "// " + _marker_body(region_id)


def _marker_at(doc: hujson.Document, grants: hujson.Found, index: int, region_id: int) -> int:
    """Where our marker comment starts before element ``index`` of ``grants``, or -1."""
    entries = grants.node.entries
    gap_start = entries[index - 1].end if index else grants.node.start + 1
    gap = doc.text[gap_start : entries[index].start]
    for marker in (grant_marker(region_id), f"/* {_marker_body(region_id)} */"):
        at = gap.find(marker)
        if at >= 0:
            return gap_start + at
    return -1


def _our_grant(doc: hujson.Document, region_id: int) -> tuple[hujson.Found, int] | None:
    """Our marked grant and where its marker starts (the first one, if a copy was pasted)."""
    grants = _find(doc, _GRANTS, "array")
    if grants is None:
        return None
    for index in range(grants.size):
        at = _marker_at(doc, grants, index, region_id)
        if at >= 0:
            element = _find(doc, (*_GRANTS, index), "object")
            if element is not None:
                return element, at
    return None


def find_grant(policy_text: str, region_id: int) -> dict[str, Any] | None:
    """Our grant as it is in the policy now (possibly edited by hand), or None."""
    ours = _our_grant(_document(policy_text), region_id)
    value: dict[str, Any] | None = ours[0].value if ours else None
    return value


def insert_grant(policy_text: str, region_id: int, grant: dict[str, Any]) -> tuple[str, bool]:
    """Add our grant (or replace our marked one) as the last element of ``grants``.

    Returns the text and whether ``grants`` was created here (then :func:`remove_grant` with
    ``remove_empty_grants`` takes the whole array out again). The marker comment goes on its own
    line before the grant (inline ``/* */`` when the grant shares a line); :func:`remove_grant`
    takes both out byte for byte.
    """
    doc = _document(policy_text)
    ours = _our_grant(doc, region_id)
    if ours is not None:
        if _same_types(ours[0].value, grant):
            return policy_text, False
        return _hujson(hujson.set, doc, ours[0].path, grant), False
    created = _find(doc, _GRANTS, "array") is None
    text: str = _hujson(hujson.append, doc, _GRANTS, grant, create_parents=True)
    element = _find(_document(text), (*_GRANTS, -1), "object")
    if element is None or element.entry is None:
        raise PolicyTextError("policy file: the new grant could not be found again")
    start = element.entry.start
    line_start = text.rfind("\n", 0, start) + 1
    if text[line_start:start].strip(" \t"):
        return text[:start] + f"/* {_marker_body(region_id)} */ " + text[start:], created
    newline = "\r\n" if "\r\n" in text else "\n"
    indent = text[line_start:start]
    return text[:start] + grant_marker(region_id) + newline + indent + text[start:], created


def remove_grant(policy_text: str, region_id: int, *, remove_empty_grants: bool = False) -> str:
    """Take our marked grant and its marker out; a user's grants are never touched.

    With ``remove_empty_grants`` (only when :func:`insert_grant` created the array) a ``grants``
    left empty goes too, so insert-then-remove restores the original text exactly.
    """
    doc = _document(policy_text)
    ours = _our_grant(doc, region_id)
    if ours is None or ours[0].entry is None:
        return policy_text
    element, marker_at = ours
    start = ours[0].entry.start
    # Without the marker the text is what append gave; removing the element inverts append.
    unmarked = doc.text[:marker_at] + doc.text[start:]
    result: str = _hujson(hujson.remove, _document(unmarked), element.path)
    if remove_empty_grants:
        left = _find(_document(result), _GRANTS, "array")
        if left is not None and left.size == 0:
            result = _hujson(hujson.remove, _document(result), _GRANTS)
    return result
