"""components/derpmap.py: the region model, its fragment, and byte-preserving HuJSON splicing.

Results are checked with ``json5`` (an independent HuJSON superset parser), and the property tests
generate policies with comments and odd whitespace between every pair of tokens, trailing commas,
unicode keys and strings, CRLF line ends, and derpMap blocks that already hold other regions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json5
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from components import derpmap
from components.derpmap import PolicyTextError, parse_hujson, remove_region, splice_region

REGION = derpmap.region_to_dict(
    derpmap.home_region(
        region_id=900,
        region_code="homelab",
        region_name="HomeLab",
        hostname="derp.example.com",
        derp_port=12345,
        stun_port=3478,
        ipv4=None,
        ipv6="2a01:4f8:c17:1::10",
        pin_ipv6=False,
    )
)


def j5(text: str) -> Any:
    """json5.loads, with escaped surrogate pairs joined as JSON requires (json5 0.17 keeps them)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        if isinstance(value, dict):
            return {fix(k): fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return fix(json5.loads(text))


# The admin console's default policy (abridged): tabs, comments, trailing commas.
DEFAULT_POLICY = """// Example/default ACLs for unrestricted connections.
{
\t// Declare static groups of users. Use autogroups for all users or users with a specific role.
\t// "groups": {
\t//   "group:example": ["alice@example.com", "bob@example.com"],
\t// },

\t// Define access control lists for users, groups, autogroups, tags,
\t// Tailscale IP addresses, and subnet ranges.
\t"acls": [
\t\t// Allow all connections.
\t\t{"action": "accept", "src": ["*"], "dst": ["*:*"]},
\t],

\t// Define users and devices that can use Tailscale SSH.
\t"ssh": [
\t\t{
\t\t\t"action": "check",
\t\t\t"src":    ["autogroup:member"],
\t\t\t"dst":    ["autogroup:self"],
\t\t\t"users":  ["autogroup:nonroot", "root"],
\t\t},
\t],
}
"""


# --------------------------------------------------------------------------------------------
# model


def test_home_region_ipv6_only_node_says_no_ipv4_and_pins_nothing_by_default() -> None:
    """An IPv6-only relay gets IPv4 "none" and no IPv6 pin (tailscale#17563, prefix changes)."""
    node = derpmap.home_region(
        region_id=901,
        region_code="office",
        region_name="Office",
        hostname="derp.office.example",
        derp_port=443,
        stun_port=3478,
        ipv4=None,
        ipv6="2a01::1",
        pin_ipv6=False,
    ).nodes[0]
    assert (node.name, node.region_id, node.ipv4, node.ipv6) == ("901a", 901, "none", None)


def test_region_to_dict_key_order_and_pins() -> None:
    """The dict spells the policy keys in the documented order; IPv4/IPv6 appear when set."""
    region = derpmap.home_region(
        region_id=900,
        region_code="home",
        region_name="Home",
        hostname="derp.example.com",
        derp_port=12345,
        stun_port=3478,
        ipv4="203.0.113.7",
        ipv6="2a01::1",
        pin_ipv6=True,
    )
    out = derpmap.region_to_dict(region)
    assert list(out) == ["RegionID", "RegionCode", "RegionName", "Nodes"]
    assert list(out["Nodes"][0]) == [
        "Name",
        "RegionID",
        "HostName",
        "IPv4",
        "IPv6",
        "DERPPort",
        "STUNPort",
    ]
    assert out["Nodes"][0]["IPv4"] == "203.0.113.7" and out["Nodes"][0]["IPv6"] == "2a01::1"


def test_node_with_ipv4_omitted_leaves_the_key_out() -> None:
    """ipv4=None on a DerpNode means "let clients resolve HostName": no IPv4 key at all."""
    node = derpmap.DerpNode(name="900a", region_id=900, host_name="h", derp_port=1, stun_port=2)
    region = derpmap.DerpRegion(900, "c", "n", (node,))
    assert "IPv4" not in derpmap.region_to_dict(region)["Nodes"][0]


def companion(**changes: Any) -> derpmap.DerpNode:
    spec: dict[str, Any] = {
        "region_id": 900,
        "index": 1,
        "hostname": "derp2.example.com",
        "derp_port": 12345,
        "stun_port": 3478,
        "ipv4": "198.51.100.7",
        "ipv6": "2a01:4f8::1",
        "pin_ipv6": False,
    }
    return derpmap.relay_node(**{**spec, **changes})


def test_region_with_a_companion_lists_the_home_node_first() -> None:
    """A meshed companion is the second node ("900b"); clients try the nodes in order, so devices
    that reach the home node stay on it (docs/upstream/derpmap.md#region-nodes)."""
    region = derpmap.home_region(
        region_id=900,
        region_code="home",
        region_name="Home",
        hostname="derp.example.com",
        derp_port=12345,
        stun_port=3478,
        ipv4=None,
        ipv6="2409:8a00::10",
        pin_ipv6=False,
        companions=(companion(),),
    )
    nodes = derpmap.region_to_dict(region)["Nodes"]
    assert [n["Name"] for n in nodes] == ["900a", "900b"]
    assert [n["HostName"] for n in nodes] == ["derp.example.com", "derp2.example.com"]
    assert nodes[0]["IPv4"] == "none" and "IPv6" not in nodes[0]
    assert nodes[1]["IPv4"] == "198.51.100.7" and "IPv6" not in nodes[1]
    assert {n["RegionID"] for n in nodes} == {900}


def test_companion_nodes_must_belong_to_the_region() -> None:
    """A companion from another region, or one named like the home node, is refused."""
    common: dict[str, Any] = {
        "region_id": 900,
        "region_code": "home",
        "region_name": "Home",
        "hostname": "derp.example.com",
        "derp_port": 443,
        "stun_port": 3478,
        "ipv4": None,
        "ipv6": None,
        "pin_ipv6": False,
    }
    with pytest.raises(ValueError):
        derpmap.home_region(**common, companions=(companion(region_id=901),))
    with pytest.raises(ValueError):
        derpmap.home_region(**common, companions=(companion(index=0),))
    with pytest.raises(ValueError):
        companion(index=26)


def test_node_pins_ipv6_only_on_request_and_says_none_for_no_ipv6() -> None:
    assert companion(pin_ipv6=True).ipv6 == "2a01:4f8::1"
    assert companion(ipv6="none", pin_ipv6=True).ipv6 == "none"
    assert companion(ipv6=None, pin_ipv6=True).ipv6 is None


@pytest.mark.parametrize(
    ("nodes", "has"),
    [
        ([{"IPv4": "none", "IPv6": "2409::1"}], False),
        ([{"IPv4": "none"}, {"IPv4": "198.51.100.7"}], True),
        ([{"HostName": "derp.example.com"}], True),  # no IPv4 field: DNS A lookup
        ([{"ipv4": "2409::1"}], False),  # not an IPv4 address: the family is not used
        ([{"IPv4": "198.51.100.7", "STUNOnly": True}], False),  # never dialled for DERP
        ([], False),
    ],
)
def test_region_has_ipv4(nodes: list[dict[str, Any]], has: bool) -> None:
    """Whether an IPv4-only client can dial some node, read as clients read the fields
    (docs/upstream/derpmap.md#ip-fields), keys in any case."""
    assert derpmap.region_has_ipv4({"RegionID": 900, "nodes": nodes}) is has


def test_fragment_text_is_json_with_omit_default_regions() -> None:
    """The stack output parses as JSON and carries the region under its string ID."""
    region = derpmap.home_region(
        region_id=900,
        region_code="homelab",
        region_name="HomeLab ✓",
        hostname="derp.example.com",
        derp_port=12345,
        stun_port=3478,
        ipv4=None,
        ipv6=None,
        pin_ipv6=False,
    )
    fragment = derpmap.derp_map_fragment(region, omit_default_regions=True)
    text = derpmap.fragment_text(fragment)
    assert json.loads(text) == fragment
    assert fragment["derpMap"]["OmitDefaultRegions"] is True
    assert "HomeLab ✓" in text  # unicode kept readable for pasting


# --------------------------------------------------------------------------------------------
# splicing: examples


def test_splice_into_default_policy_appends_derp_map_in_the_files_style() -> None:
    """The console's default policy gains a tab-indented derpMap; nothing before it moves."""
    result = splice_region(DEFAULT_POLICY, REGION, omit_default_regions=False)
    assert result.created_derp_map and result.replaced is None
    head = DEFAULT_POLICY[: DEFAULT_POLICY.rindex("}")]
    assert result.text.startswith(head)
    assert '\n\t"derpMap": {\n\t\t"OmitDefaultRegions": false,\n\t\t"Regions": {\n' in result.text
    assert '\n\t\t\t"900": {\n\t\t\t\t"RegionID": 900,' in result.text
    assert result.text.endswith("\t},\n}\n")  # trailing-comma style of the file kept
    parsed = j5(result.text)
    assert parsed["derpMap"] == {"OmitDefaultRegions": False, "Regions": {"900": REGION}}
    assert parsed["acls"] == j5(DEFAULT_POLICY)["acls"]


def test_insert_then_remove_gives_back_the_default_policy() -> None:
    """Destroy after create restores the user's policy byte for byte."""
    result = splice_region(DEFAULT_POLICY, REGION, omit_default_regions=False)
    assert remove_region(result.text, 900, remove_empty_derp_map=True) == DEFAULT_POLICY


def test_splice_next_to_other_region_keeps_it_and_its_comment() -> None:
    """Another stack's region and its comment stay; ours is added after it."""
    text = (
        '{\n  "derpMap": {\n    "OmitDefaultRegions": true,\n    "Regions": {\n'
        '      // office relay\n      "901": {"RegionID": 901, "Nodes": []}\n    }\n  }\n}\n'
    )
    result = splice_region(text, REGION, omit_default_regions=False)
    assert not result.created_derp_map
    assert '      // office relay\n      "901": {"RegionID": 901, "Nodes": []},\n' in result.text
    assert '      "900": {\n        "RegionID": 900,' in result.text
    parsed = j5(result.text)["derpMap"]
    assert parsed["OmitDefaultRegions"] is True  # not ours to change
    assert list(parsed["Regions"]) == ["901", "900"]
    assert remove_region(result.text, 900, remove_empty_derp_map=False) == text


def test_replace_changes_only_the_region_value() -> None:
    """Replacing our region rewrites its value span only; comments around it survive."""
    old = dict(REGION, RegionName="Old")
    text = splice_region(DEFAULT_POLICY, old, omit_default_regions=False).text
    text = text.replace('"900": {', '/* ours */ "900": {')
    result = splice_region(text, REGION, omit_default_regions=False)
    assert result.replaced == old and not result.created_derp_map
    assert "/* ours */" in result.text
    assert j5(result.text)["derpMap"]["Regions"]["900"] == REGION
    before, after = text.split('"900": ', 1)[0], text.rsplit("\t\t}\n\t},\n}\n", 1)[1]
    assert result.text.startswith(before) and result.text.endswith("\t\t}\n\t},\n}\n" + after)


def test_splice_same_region_again_returns_the_same_text() -> None:
    """An unchanged region is not rewritten (no churn, no write)."""
    once = splice_region(DEFAULT_POLICY, REGION, omit_default_regions=False).text
    again = splice_region(once, REGION, omit_default_regions=False)
    assert again.text == once and again.replaced == REGION


def test_crlf_file_stays_crlf() -> None:
    """A CRLF policy gets CRLF lines, and a // comment before CRLF is not broken."""
    text = '{\r\n    "a": 1 // note\r\n}\r\n'
    result = splice_region(text, REGION, omit_default_regions=False).text
    assert "\n" not in result.replace("\r\n", "")
    assert result.startswith('{\r\n    "a": 1, // note\r\n    "derpMap": {\r\n        "Omit')
    assert remove_region(result, 900, remove_empty_derp_map=True) == text


def test_one_line_policy_gets_a_one_line_region() -> None:
    """An object written on one line stays one line."""
    text = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'
    result = splice_region(text, REGION, omit_default_regions=True).text
    assert "\n" not in result
    assert j5(result)["derpMap"]["OmitDefaultRegions"] is True
    assert remove_region(result, 900, remove_empty_derp_map=True) == text


def test_empty_regions_object_grows_and_shrinks_back() -> None:
    """`"Regions": {}` becomes a block with our region, and `{}` again on removal."""
    text = '{\n  "derpMap": {\n    "Regions": {},\n  },\n}\n'
    result = splice_region(text, REGION, omit_default_regions=False).text
    assert '    "Regions": {\n      "900": {\n' in result and "\n    },\n  },\n}\n" in result
    assert remove_region(result, 900, remove_empty_derp_map=False) == text


def test_derp_map_without_regions_gets_a_regions_member() -> None:
    """A derpMap with only OmitDefaultRegions gains Regions; OmitDefaultRegions is left as is."""
    text = '{"derpMap": {"OmitDefaultRegions": true}}'
    result = splice_region(text, REGION, omit_default_regions=False)
    assert j5(result.text) == {"derpMap": {"OmitDefaultRegions": True, "Regions": {"900": REGION}}}
    assert not result.created_derp_map


def test_remove_keeps_a_derp_map_someone_else_added_to() -> None:
    """Even with remove_empty_derp_map, a derpMap with foreign keys is kept."""
    created = splice_region("{}", REGION, omit_default_regions=False).text
    edited = created.replace('"OmitDefaultRegions"', '"HomeParams": {}, "OmitDefaultRegions"')
    out = remove_region(edited, 900, remove_empty_derp_map=True)
    assert j5(out) == {"derpMap": {"HomeParams": {}, "OmitDefaultRegions": False, "Regions": {}}}


def test_remove_without_created_flag_keeps_empty_derp_map() -> None:
    """A derpMap we did not create stays even when empty."""
    text = '{"derpMap": {"Regions": {"900": {"RegionID": 900}}}}'
    assert j5(remove_region(text, 900, remove_empty_derp_map=False)) == {"derpMap": {"Regions": {}}}


def test_remove_missing_region_is_a_no_op() -> None:
    """Deleting a region that is not there returns the text unchanged."""
    assert remove_region(DEFAULT_POLICY, 900, remove_empty_derp_map=True) == DEFAULT_POLICY


def test_remove_middle_region_keeps_neighbours() -> None:
    """A region between two others goes with its comma; the neighbours stay as written."""
    text = '{"derpMap": {"Regions": {"901": {}, "900": {"RegionID": 900}, "902": {},}}}'
    out = remove_region(text, 900, remove_empty_derp_map=False)
    assert out == '{"derpMap": {"Regions": {"901": {}, "902": {},}}}'


def test_find_region_decodes_escaped_keys() -> None:
    """Keys are compared decoded: "9\\u00300" is region 900."""
    text = '{"derpMap": {"Regions": {"9\\u00300": {"RegionID": 900}}}}'
    assert derpmap.find_region(text, 900) == {"RegionID": 900}
    assert derpmap.find_region(text, 901) is None


def test_set_omit_default_regions_changes_only_that_value() -> None:
    """Our own derpMap's OmitDefaultRegions can be flipped in place."""
    text = splice_region(DEFAULT_POLICY, REGION, omit_default_regions=False).text
    flipped = derpmap.set_omit_default_regions(text, True)
    assert flipped == text.replace('"OmitDefaultRegions": false', '"OmitDefaultRegions": true')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty document"),
        ("{", "unterminated object"),
        ('{"a": 1 "b": 2}', "expected ',' or '}'"),
        ("{a: 1}", "expected a quoted key"),
        ('{"a": [1,,]}', "expected a value"),
        ('{"a": 1} /* open', "unterminated /* comment"),
        ('{"a": "tab\there"}', "control character"),
        ('{"a": 01}', "bad number"),
        ('{"a": tru}', "expected a value"),
        ('{"a": "\\x41"}', "bad escape"),
        ("[]", "must be a JSON object at the top level"),
        ('{"derpMap": []}', '"derpMap" must be an object, found an array'),
        ('{"derpMap": null}', '"derpMap" must be an object, found null'),
        ('{"derpMap": {"Regions": "900"}}', '"derpMap.Regions" must be an object, found a string'),
        ('{"acls": [], "acls": []}', "key 'acls' twice"),
        ('{"derpMap": {}, "derpMap": {}}', "key 'derpMap' twice"),
        ('{"derpMap": {"Regions": {"900": {}, "900": {}}}}', "key '900' twice"),
    ],
)
def test_garbage_is_refused_with_a_clear_message(text: str, message: str) -> None:
    """Text we cannot splice safely raises PolicyTextError naming the problem."""
    with pytest.raises(PolicyTextError, match=re.escape(message)):
        splice_region(text, REGION, omit_default_regions=False)
    with pytest.raises(PolicyTextError, match=re.escape(message)):
        remove_region(text, 900, remove_empty_derp_map=True)


def test_region_that_is_not_an_object_is_refused() -> None:
    """Regions."900" holding null cannot be read or replaced (the API would not accept it)."""
    text = '{"derpMap": {"Regions": {"900": null}}}'
    with pytest.raises(
        PolicyTextError, match=re.escape('"derpMap.Regions.900" must be an object, found null')
    ):
        splice_region(text, REGION, omit_default_regions=False)
    with pytest.raises(PolicyTextError, match="must be an object"):
        derpmap.find_region(text, 900)


def test_absurd_nesting_is_refused_not_a_crash() -> None:
    """Deeply nested garbage gives PolicyTextError, not RecursionError."""
    with pytest.raises(PolicyTextError, match="nesting too deep"):
        parse_hujson('{"a": ' + "[" * 5000 + "]" * 5000 + "}")


def test_compact_region_is_replaced_compactly() -> None:
    """A region written on one line is replaced on one line."""
    text = '{"derpMap": {"Regions": {"900": {"RegionID": 900}, "901": {"RegionID": 901}}}}'
    out = splice_region(text, REGION, omit_default_regions=False).text
    assert out == text.replace('{"RegionID": 900}', json.dumps(REGION))


def test_error_names_line_and_column() -> None:
    """Parse errors point at the line and column of the problem."""
    with pytest.raises(PolicyTextError, match="line 3, column 8"):
        parse_hujson('{\n  "a": 1,\n  "b": ?\n}')


def test_region_without_integer_id_is_refused() -> None:
    """A region dict without an integer RegionID cannot name its key."""
    with pytest.raises(ValueError, match="integer RegionID"):
        splice_region("{}", {"RegionID": "900"}, omit_default_regions=False)


# --------------------------------------------------------------------------------------------
# splicing: properties over generated policies

_comment_text = st.text(
    # No line separators: JSON5 (our cross-check) ends `//` comments at them, HuJSON only at LF.
    alphabet=st.characters(
        blacklist_categories=["Cs", "Cc", "Zl", "Zp"], blacklist_characters="*/"
    ),
    max_size=8,
)
_keys = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=0, max_size=6).filter(
    lambda k: k.lower() not in ("derpmap", "grants")
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8,
)


class _Emitter:
    """Writes a value as HuJSON with drawn trivia; every comment carries a unique marker."""

    def __init__(self, draw: st.DrawFn, nl: str) -> None:
        self.draw = draw
        self.nl = nl
        self.count = 0

    def trivia(self, tag: str) -> str:
        parts = []
        for _ in range(self.draw(st.integers(0, 2))):
            kind = self.draw(st.sampled_from(["sp", "tab", "nl", "line", "block"]))
            if kind in ("line", "block"):
                self.count += 1
                body = f"{tag}{self.count}~{self.draw(_comment_text)}"
                parts.append(f"//{body}{self.nl}" if kind == "line" else f"/*{body}*/")
            else:
                parts.append({"sp": " ", "tab": "\t", "nl": self.nl + "  "}[kind])
        return "".join(parts)

    def string(self, value: str) -> str:
        return json.dumps(value, ensure_ascii=self.draw(st.booleans()))

    def value(self, value: Any, tag: str) -> str:
        t = self.trivia
        if isinstance(value, dict):
            members = [
                t(tag) + self.string(k) + t(tag) + ":" + t(tag) + self.value(v, tag) + t(tag)
                for k, v in value.items()
            ]
            trailing = "," if self.draw(st.booleans()) and members else ""
            return "{" + ",".join(members) + trailing + t(tag) + "}"
        if isinstance(value, list):
            items = [t(tag) + self.value(v, tag) + t(tag) for v in value]
            trailing = "," if self.draw(st.booleans()) and items else ""
            return "[" + ",".join(items) + trailing + t(tag) + "]"
        if isinstance(value, str):
            return self.string(value)
        return json.dumps(value)


def _other_region(region_id: int) -> dict[str, Any]:
    return {
        "RegionID": region_id,
        "RegionCode": f"r{region_id}",
        "RegionName": f"Région {region_id}",
        "Nodes": [{"Name": f"{region_id}a", "RegionID": region_id, "HostName": "h.example"}],
    }


GRANT = derpmap.peer_relay_grant(["*"], "100.101.102.103")
_USER_GRANTS = st.lists(
    st.sampled_from(
        [
            {"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]},
            derpmap.peer_relay_grant(["tag:server"], "100.101.102.103"),  # ours but one selector
            {"src": ["*"], "dst": ["*"], "app": {"tailscale.com/cap/relay": []}},
        ]
    ),
    max_size=3,
)


@st.composite
def policies(
    draw: st.DrawFn, *, with_ours: bool | None = None, grants: bool = False
) -> tuple[str, dict[str, Any]]:
    """(HuJSON text, the value it means): random rules, maybe a derpMap with other regions.

    Comment markers: "v" inside our region's value (gone after replace and remove), "m" between
    its key and value or after the value (kept by replace, may go with remove), "c" elsewhere
    (always kept, in order).
    """
    body: dict[str, Any] = draw(st.dictionaries(_keys, _values, max_size=4))
    if grants and draw(st.booleans()):
        body = {k: v for k, v in body.items() if k.lower() != "grants"}
        body["grants"] = draw(_USER_GRANTS)
    derp_map: dict[str, Any] | None = None
    ours = draw(st.booleans()) if with_ours is None else with_ours
    if ours or draw(st.booleans()):
        others = draw(st.lists(st.integers(901, 999), unique=True, max_size=3))
        regions = {str(i): _other_region(i) for i in others}
        if ours:
            position = draw(st.integers(0, len(regions)))
            items = list(regions.items())
            items.insert(position, ("900", dict(REGION, RegionName="stale")))
            regions = dict(items)
        derp_map = {"Regions": regions}
        if draw(st.booleans()):
            derp_map = {"OmitDefaultRegions": draw(st.booleans()), **derp_map}
    if derp_map is not None:
        items = list(body.items())
        items.insert(draw(st.integers(0, len(items))), ("derpMap", derp_map))
        body = dict(items)
    emitter = _Emitter(draw, draw(st.sampled_from(["\n", "\r\n"])))
    parts = []
    for key, value in body.items():
        tag = "c"
        text_value = ""
        if key == "derpMap":
            assert derp_map is not None
            inner = []
            for dm_key, dm_value in derp_map.items():
                if dm_key == "Regions":
                    regions_text = []
                    for rk, rv in dm_value.items():
                        ours_now = rk == "900"
                        mt = "m" if ours_now else tag
                        value_text = emitter.value(rv, "v" if ours_now else tag)
                        regions_text.append(
                            emitter.trivia(tag)
                            + json.dumps(rk)
                            + emitter.trivia(mt)
                            + ":"
                            + emitter.trivia(mt)
                            + value_text
                            + emitter.trivia(mt)
                        )
                    trailing = "," if draw(st.booleans()) and regions_text else ""
                    dm_text = "{" + ",".join(regions_text) + trailing + emitter.trivia(tag) + "}"
                else:
                    dm_text = emitter.value(dm_value, tag)
                inner.append(
                    emitter.trivia(tag)
                    + json.dumps(dm_key)
                    + ":"
                    + emitter.trivia(tag)
                    + dm_text
                    + emitter.trivia(tag)
                )
            trailing = "," if draw(st.booleans()) and inner else ""
            text_value = "{" + ",".join(inner) + trailing + emitter.trivia(tag) + "}"
        else:
            text_value = emitter.value(value, tag)
        parts.append(
            emitter.trivia(tag)
            + emitter.string(key)
            + emitter.trivia(tag)
            + ":"
            + emitter.trivia(tag)
            + text_value
            + emitter.trivia(tag)
        )
    trailing = "," if draw(st.booleans()) and parts else ""
    text = (
        emitter.trivia("c")
        + "{"
        + ",".join(parts)
        + trailing
        + emitter.trivia("c")
        + "}"
        + emitter.trivia("c")
        + draw(st.sampled_from(["", emitter.nl]))
    )
    return text, body


def _markers(text: str, tag: str) -> list[str]:
    return re.findall(rf"(?<=[/*]){tag}\d+~", text)


def _expected_after_splice(value: dict[str, Any], omit: bool) -> dict[str, Any]:
    expected = json.loads(json.dumps(value))
    if "derpMap" not in expected:
        expected["derpMap"] = {"OmitDefaultRegions": omit, "Regions": {}}
    expected["derpMap"].setdefault("Regions", {})["900"] = REGION
    return expected


_settings = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(policies())
def test_parser_agrees_with_json5(case: tuple[str, dict[str, Any]]) -> None:
    """Our HuJSON parser reads generated policies exactly as json5 and the generator mean them."""
    text, value = case
    assert parse_hujson(text) == j5(text) == value


@_settings
@given(policies(with_ours=False), st.booleans())
def test_insert_adds_exactly_our_region_and_remove_restores_the_bytes(
    case: tuple[str, dict[str, Any]], omit: bool
) -> None:
    """Insert: parses, holds exactly our region more, keeps all comments; remove: same bytes."""
    text, value = case
    result = splice_region(text, REGION, omit_default_regions=omit)
    assert j5(result.text) == _expected_after_splice(value, omit)
    assert result.created_derp_map == ("derpMap" not in value)
    assert _markers(result.text, "c") == _markers(text, "c")
    assert remove_region(result.text, 900, remove_empty_derp_map=result.created_derp_map) == text


@_settings
@given(policies(with_ours=True))
def test_replace_swaps_only_our_region(case: tuple[str, dict[str, Any]]) -> None:
    """Replace: our region is the new one, others and every comment outside ours are kept."""
    text, value = case
    result = splice_region(text, REGION, omit_default_regions=False)
    assert result.replaced == dict(REGION, RegionName="stale") and not result.created_derp_map
    assert j5(result.text) == _expected_after_splice(value, False)
    assert _markers(result.text, "c") == _markers(text, "c")
    assert _markers(result.text, "m") == _markers(text, "m")
    assert _markers(result.text, "v") == []


@_settings
@given(policies(with_ours=True))
def test_remove_takes_out_exactly_our_region(case: tuple[str, dict[str, Any]]) -> None:
    """Remove: parses, our region gone, everything else (and every outside comment) kept."""
    text, value = case
    out = remove_region(text, 900, remove_empty_derp_map=False)
    expected = json.loads(json.dumps(value))
    del expected["derpMap"]["Regions"]["900"]
    assert j5(out) == expected
    assert _markers(out, "c") == _markers(text, "c")
    assert _markers(out, "v") == []


@_settings
@given(policies(), st.data())
def test_damaged_text_is_refused_or_read_like_json5(
    case: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    """A policy with a character dropped or inserted: we refuse it, or read it as json5 does."""
    text, _ = case
    at = data.draw(st.integers(0, len(text)))
    if data.draw(st.booleans()) and at < len(text):
        damaged = text[:at] + text[at + 1 :]
    else:
        damaged = text[:at] + data.draw(st.sampled_from(list('{}[],:"/*\\ \n0a-'))) + text[at:]
    # A lone CR ends a `//` comment in JSON5 but not in HuJSON (LF only): no common answer there.
    assume(re.search(r"\r(?!\n)", damaged) is None)
    try:
        ours = parse_hujson(damaged)
    except PolicyTextError:
        with pytest.raises(PolicyTextError):
            splice_region(damaged, REGION, omit_default_regions=False)
        return
    assert ours == j5(damaged)


# --------------------------------------------------------------------------------------------
# draining, and the peer-relay grant: properties


@_settings
@given(policies(with_ours=False), st.booleans())
def test_drain_then_restore_gives_back_the_bytes(
    case: tuple[str, dict[str, Any]], omit: bool
) -> None:
    """For any policy the splicer accepts: drain sets the flag on our region only; restore gives
    back exactly the published text."""
    text, value = case
    published = splice_region(text, REGION, omit_default_regions=omit).text
    drained = derpmap.drain_region(published, 900)
    expected = _expected_after_splice(value, omit)
    expected["derpMap"]["Regions"]["900"] = {**REGION, "NoMeasureNoHome": True}
    assert j5(drained) == expected
    assert derpmap.region_drained(derpmap.find_region(drained, 900))
    assert derpmap.drain_region(drained, 900) == drained  # draining twice changes nothing
    assert derpmap.restore_region(drained, 900) == published


@_settings
@given(policies(grants=True))
def test_grant_insert_then_remove_gives_back_the_bytes(case: tuple[str, dict[str, Any]]) -> None:
    """Our marked grant goes after the user's; removing it restores every byte, and a user grant
    that differs from ours by one selector (or equals it without our marker) is never taken."""
    text, value = case
    inserted, created = derpmap.insert_grant(text, 900, GRANT)
    grants = j5(inserted)["grants"]
    assert grants == [*value.get("grants", []), GRANT]
    assert created == ("grants" not in value)
    assert derpmap.find_grant(inserted, 900) == GRANT
    assert derpmap.find_grant(text, 900) is None  # a user grant is never ours
    assert derpmap.insert_grant(inserted, 900, GRANT) == (inserted, False)
    assert derpmap.remove_grant(inserted, 900, remove_empty_grants=created) == text


# A policy written with lowercase keys (tailscale-client-go-v2 writes `derpMap.regions`) is edited
# in its own spelling; a second spelling is never added.
@pytest.mark.parametrize(
    "text",
    [
        '{"derpmap": {"regions": {"901": {"RegionID": 901}}}}',
        '{"DERPMap": {"omitDefaultRegions": true, "REGIONS": {}}}',
        '{"derpMap": {"Regions": {}}}',
    ],
)
def test_keys_are_matched_as_tailscale_reads_them(text: str) -> None:
    result = splice_region(text, REGION, omit_default_regions=False)
    keys = re.findall(r'"(\w+)"\s*:', result.text)
    assert sum(k.lower() == "derpmap" for k in keys) == 1
    assert sum(k.lower() == "regions" for k in keys) == 1
    assert derpmap.find_region(result.text, 900) == REGION
    assert remove_region(result.text, 900, remove_empty_derp_map=False) == text


# Two spellings of one key are refused with both named, never guessed at.
def test_two_spellings_of_one_key_are_refused() -> None:
    with pytest.raises(PolicyTextError, match=r"Regions.*regions|regions.*Regions"):
        splice_region(
            '{"derpMap": {"Regions": {}, "regions": {}}}', REGION, omit_default_regions=False
        )
    with pytest.raises(PolicyTextError, match=r"derpMap.*derpmap|derpmap.*derpMap"):
        splice_region('{"derpMap": {}, "derpmap": {}}', REGION, omit_default_regions=False)


# A grant array on one line gets an inline marker; an empty array and a missing one work too.
@pytest.mark.parametrize(
    "text",
    [
        '{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}',
        '{"grants": []}',
        '{\n  "acls": [],\n}\n',
        '{\r\n\t"grants": [\r\n\t\t{"src": ["a@b.c"], "dst": ["*"], "ip": ["*"]},\r\n\t],\r\n}\r\n',
    ],
)
def test_grant_round_trip_examples(text: str) -> None:
    inserted, created = derpmap.insert_grant(text, 900, GRANT)
    assert j5(inserted)["grants"][-1] == GRANT
    assert derpmap.remove_grant(inserted, 900, remove_empty_grants=created) == text
    if "\r\n" in text:
        assert "\n" not in inserted.replace("\r\n", "")


@pytest.mark.parametrize(
    ("text", "alone"),
    [
        ('{"derpMap": {"OmitDefaultRegions": true, "Regions": {"900": {"RegionID": 900}}}}', True),
        ('{"derpmap": {"omitDefaultRegions": true, "regions": {"900": {"RegionID": 900}}}}', True),
        ('{"derpMap": {"Regions": {"900": {"RegionID": 900}}}}', False),  # Tailscale's remain
        (
            '{"derpMap": {"OmitDefaultRegions": true, "Regions": {"900": {"RegionID": 900},'
            ' "901": {"RegionID": 901}}}}',
            False,
        ),
        ("{}", False),
    ],
)
def test_sole_region(text: str, alone: bool) -> None:
    """With OmitDefaultRegions and no other region, a drain of ours moves nobody
    (docs/upstream/derpmap.md#one-region); keys in any case, as the control plane reads them."""
    assert derpmap.sole_region(text, 900) is alone
