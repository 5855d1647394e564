"""components/hujson.py: HuJSON parse, find by path, and byte-exact set / remove / append.

Values are cross-checked with ``json5`` (an independent parser of a HuJSON superset). The property
tests write generated values as HuJSON with comments and odd whitespace in every gap, trailing
commas, CRLF or LF, random indentation and random key casing; every comment carries a unique
marker so a test can tell exactly which comments an edit kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import json5
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from components import hujson
from components.hujson import (
    AmbiguousKeyError,
    HuJSONError,
    HuJSONSyntaxError,
    IntKey,
    Key,
    PathError,
    PathNotFoundError,
    PathTypeError,
    Segment,
)


def j5(text: str) -> Any:
    """json5.loads, with escaped surrogate pairs joined as JSON requires (json5 keeps them)."""

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

REGION: dict[str, Any] = {
    "RegionID": 900,
    "RegionCode": "homelab",
    "RegionName": "HomeLab",
    "Nodes": [
        {
            "Name": "900a",
            "RegionID": 900,
            "HostName": "derp.example.com",
            "IPv4": "none",
            "DERPPort": 12345,
            "STUNPort": 3478,
        }
    ],
}
REGION_900: tuple[Segment, ...] = ("derpMap", "Regions", IntKey(900))
GRANT = {"src": ["group:eng"], "dst": ["tag:derp"], "ip": ["tcp:12345"]}


# --------------------------------------------------------------------------------------------
# parse / loads


def test_parse_reads_comments_trailing_commas_and_a_bom() -> None:
    """Comments of both kinds, trailing commas and a leading BOM are HuJSON; the value is JSON's."""
    text = '\ufeff// top\n{"a": [1, 2,], /* b */ "b": {"c": null,},}\n'
    assert hujson.loads(text) == {"a": [1, 2], "b": {"c": None}}


@pytest.mark.parametrize(
    "text",
    ['{"a": -0.5e3, "b": [true, false, null], "c": "\\u00e9\\ud83d\\ude00\\n"}', "[]", '"x"', "-0"],
)
def test_loads_reads_plain_json_like_the_stdlib(text: str) -> None:
    """All JSON is HuJSON: loads agrees with json.loads, escapes and surrogate pairs included."""
    assert hujson.loads(text) == json.loads(text)


def test_loads_keeps_the_last_duplicate_like_json() -> None:
    """loads gives plain values: the last of two equal keys wins (as in json and Go)."""
    assert hujson.loads('{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize(
    ("text", "reason", "line", "column"),
    [
        ("", "empty document", 1, 1),
        ("  // nothing\n", "empty document", 2, 1),
        ("{", "unterminated object", 1, 1),
        ("[1, 2", "unterminated array", 1, 1),
        ('{"a": 1 "b": 2}', "expected ',' or '}' in object", 1, 9),
        ("[1 2]", "expected ',' or ']' in array", 1, 4),
        ("{a: 1}", "unexpected 'a', expected a quoted key or '}'", 1, 2),
        ('{"a" 1}', "expected ':' after object key", 1, 6),
        ('{"a": [1,,]}', "unexpected ',', expected a value", 1, 10),
        ('{"a": tru}', "unexpected 'tru', expected a value", 1, 7),
        ('{"a": nullx}', "unexpected 'nullx', expected a value", 1, 7),
        ('{"a": 01}', "bad number '01'", 1, 7),
        ('{"a": 1.}', "bad number '1.'", 1, 7),
        ('{"a": -}', "bad number '-'", 1, 7),
        ('{"a": 1e5x}', "bad number '1e5x'", 1, 7),
        ('{"a": "tab\there"}', "control character in string", 1, 11),
        ('{"a": "\\x41"}', "bad escape in string", 1, 8),
        ('{"a": "\\u12"}', "bad \\u escape in string", 1, 8),
        ('{"a": "open}', "unterminated string", 1, 7),
        ('{"a": 1} /* open', "unterminated /* comment", 1, 10),
        ('{"a": 1}\n// last', "a // comment must end with a newline, even the last one", 2, 1),
        ("{} {}", "unexpected '{' after the top-level value", 1, 4),
        ("{}\n\n  ]", "unexpected ']' after the top-level value", 3, 3),
        ("\u00a0{}", "unexpected '\\xa0', expected a value", 1, 1),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, reason: str, line: int, column: int) -> None:
    """Each kind of bad text raises HuJSONSyntaxError with its reason, line and column."""
    with pytest.raises(HuJSONSyntaxError) as caught:
        hujson.parse(text)
    err = caught.value
    assert (err.reason, err.line, err.column) == (reason, line, column)
    assert str(err) == f"not valid HuJSON: {reason} at line {line}, column {column}"
    assert isinstance(err, HuJSONError) and isinstance(err, ValueError)


def test_nesting_is_limited_without_recursion_errors() -> None:
    """256 levels parse; 257 and absurd nesting are refused as syntax errors, never a crash."""
    assert hujson.loads("[" * 256 + "]" * 256) == json.loads("[" * 256 + "]" * 256)
    for depth in (257, 100_000):
        with pytest.raises(HuJSONSyntaxError, match="nesting too deep"):
            hujson.parse('{"a": ' + "[" * depth + "]" * depth + "}")


def test_parse_wants_text() -> None:
    """Bytes are a caller's mistake (decode first), not bad HuJSON."""
    with pytest.raises(TypeError, match="must be str"):
        hujson.parse(b"{}")  # type: ignore[arg-type]


def test_numbers_keep_int_and_float_apart() -> None:
    """Integers stay int (any size), others float, as json.loads reads them."""
    assert hujson.loads("[0, -7, 12345678901234567890123, 1.0, 2e3, -0.0]") == [
        0,
        -7,
        12345678901234567890123,
        1.0,
        2000.0,
        -0.0,
    ]
    assert [type(v) for v in hujson.loads("[1, 1.0, 1e0]")] == [int, float, float]


# --------------------------------------------------------------------------------------------
# find, paths, case folding


def test_find_gives_the_value_where_it_is_and_the_files_spelling() -> None:
    """find returns the value, its line/column and source text, and the path as the file has it."""
    text = '{\n  "DERPMap": {\n    "regions": {"900": {"RegionID": 900}}\n  }\n}\n'
    found = hujson.find(text, REGION_900)
    assert found is not None
    assert found.value == {"RegionID": 900} and found.kind == "object"
    assert (found.line, found.column) == (3, 24)
    assert found.source == '{"RegionID": 900}'
    assert found.path == ("DERPMap", "regions", Key("900"))


def test_struct_fields_match_in_any_case_map_keys_only_exactly() -> None:
    """A str segment ignores case (Go struct field); Key and IntKey segments (map keys) do not."""
    text = '{"Grants": [{"App": {"example.com/Cap": [1]}}]}'
    assert hujson.find(text, ("grants", 0, "app", Key("example.com/Cap"))) is not None
    assert hujson.find(text, ("GRANTS", -1, "aPP", Key("example.com/cap"))) is None
    assert hujson.find(text, ("grants", 0, "app", "example.com/cap")) is not None


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("OmitDefaultRegions", "omitDefaultRegions", True),
        ("k", "\u212a", True),  # KELVIN SIGN folds with k (unicode.SimpleFold orbit k, K, K)
        ("s", "\u017f", True),  # LATIN SMALL LETTER LONG S
        ("\u03c3", "\u03c2", True),  # σ and final ς
        ("\u00df", "\u1e9e", True),  # ß and capital ẞ
        ("\u00b5", "\u039c", True),  # MICRO SIGN and Greek capital MU
        ("i", "\u0131", False),  # dotless ı has no simple fold to i
        ("i", "\u0130", False),  # nor has dotted İ
        ("\u00df", "ss", False),  # full folding would say equal; Go's simple folding does not
        ("ab", "a", False),
    ],
)
def test_equal_fold_is_gos_bytes_equal_fold(a: str, b: str, equal: bool) -> None:
    """equal_fold answers as Go's bytes.EqualFold does (Unicode simple case folding)."""
    assert hujson.equal_fold(a, b) is equal


# Go 1.26.8 (unicode.Version 15.0.0) printed, for every code point r whose fold class has a
# smaller member, "%x %x\n" of r and that smallest member (encoding/json fold.go foldRune):
#     for r := rune(0); r <= unicode.MaxRune; r++ {
#         if r >= 0xD800 && r <= 0xDFFF { continue }
#         if f := foldRune(r); f != r { fmt.Printf("%x %x\n", r, f) }
#     }
# 1454 lines; this is their SHA-256.
GO_FOLD_TABLE_SHA256 = "8e7f96552ab536d4798a1d4c42556f0a87d35e5504fae4b6d5a0c2e675f3a794"


def test_case_folding_matches_gos_table_for_every_code_point() -> None:
    """Our fold classes are Go's for all of Unicode (the table's hash is Go's, see above)."""
    fold = hujson._fold_char.__wrapped__  # the uncached function: no 1.1M-entry cache
    classes: dict[str, list[int]] = {}
    for block in range(0, 0x110000, 256):
        chars = "".join(chr(r) for r in range(block, block + 256) if not 0xD800 <= r <= 0xDFFF)
        if chars.casefold() == chars:  # no character here folds to anything else
            continue
        for ch in chars:
            classes.setdefault(fold(ch), []).append(ord(ch))
    pairs = []
    for key, members in classes.items():
        group = {*members, *([ord(key)] if fold(key) == key else [])}
        pairs += [(r, min(group)) for r in group if r != min(group)]
    table = "".join(f"{r:x} {m:x}\n" for r, m in sorted(pairs))
    assert len(pairs) == 1454
    assert hashlib.sha256(table.encode()).hexdigest() == GO_FOLD_TABLE_SHA256


@pytest.mark.parametrize(
    ("spelling", "matches"),
    [
        *[("900", True), ("0900", True), ("+900", True), ("-900", False), ("9e2", False)],
        *[(" 900", False), ("900.0", False), ("\u0669\u0660\u0660", False), ("9_00", False)],
    ],
)
def test_int_keys_match_as_go_parses_map_int_keys(spelling: str, matches: bool) -> None:
    """IntKey(900) matches keys strconv.ParseInt reads as 900, nothing else."""
    text = json.dumps({"derpMap": {"Regions": {spelling: {"RegionID": 900}}}})
    assert (hujson.find(text, REGION_900) is not None) is matches


def test_keys_are_compared_decoded() -> None:
    """Escapes in keys are resolved before matching: "9\\u00300" is region 900."""
    text = '{"derp\\u004dap": {"Regions": {"9\\u00300": {"RegionID": 900}}}}'
    found = hujson.find(text, REGION_900)
    assert found is not None and found.value == {"RegionID": 900}


def test_missing_paths_find_nothing() -> None:
    """A key or index that is not there gives None, not an error."""
    text = '{"a": {"b": [1]}}'
    assert hujson.find(text, ("a", "c")) is None
    assert hujson.find(text, ("a", "b", 1)) is None
    assert hujson.find(text, ("a", "b", -2)) is None
    assert hujson.find(text, ("z", "y", "x")) is None


def test_a_path_through_the_wrong_kind_says_which_path_and_what_was_found() -> None:
    """An object step on an array (or the reverse) raises PathTypeError naming path and kind."""
    text = '{\n  "derpMap": {"Regions": ["900"]}\n}'
    with pytest.raises(PathTypeError) as caught:
        hujson.find(text, REGION_900)
    assert str(caught.value) == (
        "\"derpMap.Regions\" must be an object to look up '900', found an array "
        "at line 2, column 26"
    )
    assert caught.value.path == ("derpMap", "Regions") and caught.value.found == "an array"
    with pytest.raises(PathTypeError, match=r'"derpMap" must be an array to take element \[0\]'):
        hujson.find(text, ("derpMap", 0))
    with pytest.raises(PathTypeError, match="the top-level value must be an object"):
        hujson.find("[]", ("derpMap",))


def test_find_can_demand_a_kind() -> None:
    """kind= turns "found, but of another kind" into a PathTypeError (a region that is null)."""
    text = '{"derpMap": {"Regions": {"900": null}}}'
    with pytest.raises(PathTypeError, match=r'"derpMap.Regions.900" must be an object, found null'):
        hujson.find(text, REGION_900, kind="object")
    assert hujson.find(text, ("derpMap",), kind="object") is not None


def test_two_spellings_of_one_field_are_ambiguous() -> None:
    """Regions and regions in one object: Go would merge them, so we refuse and name both."""
    text = '{"derpMap": {\n  "Regions": {},\n  "regions": {"900": {}}\n}}'
    with pytest.raises(AmbiguousKeyError) as caught:
        hujson.find(text, REGION_900)
    err = caught.value
    assert err.spellings == (("Regions", 2), ("regions", 3))
    assert err.path == ("derpMap",)
    assert str(err) == (
        "found 'Regions' (line 2) and 'regions' (line 3) in \"derpMap\", which both mean "
        "'Regions' (keys are matched ignoring case); keep only one so the file is unambiguous"
    )


def test_the_same_key_twice_is_ambiguous_for_map_keys_too() -> None:
    """A duplicated map key is refused as well, with the lines of both."""
    text = '{"derpMap": {"Regions": {"900": {},\n"0900": {}}}}'
    with pytest.raises(AmbiguousKeyError, match=r"'900' \(line 1\) and '0900' \(line 2\)"):
        hujson.find(text, REGION_900)
    with pytest.raises(
        AmbiguousKeyError, match=r"the key 'a' twice in the top-level object \(lines 1 and 1\)"
    ):
        hujson.find('{"a": 1, "a": 2}', (Key("a"),))


def test_check_unique_keys_finds_clashes_anywhere_in_an_object() -> None:
    """The policy's top level is a struct: acls and ACLs clash; as a map only equal keys do."""
    text = '{"acls": [], "groups": {}, "ACLs": []}'
    with pytest.raises(AmbiguousKeyError, match=r"'acls' \(line 1\) and 'ACLs' \(line 1\)"):
        hujson.check_unique_keys(text)
    hujson.check_unique_keys(text, case_insensitive=False)
    with pytest.raises(
        AmbiguousKeyError, match=r"key 'x' 3 times in the top-level object \(lines 1, 1 and 1\)"
    ):
        hujson.check_unique_keys('{"x": 1, "x": 2, "x": 3}', case_insensitive=False)
    hujson.check_unique_keys(text, ("missing",))


def test_path_segments_are_checked() -> None:
    """A bare string or a bool is a caller's mistake, caught before any lookup."""
    with pytest.raises(TypeError, match="tuple of segments"):
        hujson.find("{}", "derpMap")
    with pytest.raises(TypeError, match="path segment"):
        hujson.find("[1]", (True,))
    with pytest.raises(TypeError):
        IntKey("900")  # type: ignore[arg-type]


def test_format_path_reads_like_the_policy() -> None:
    """Error messages name paths the way people write them."""
    path = ("grants", 2, "app", Key("example.com/cap x"), IntKey(900))
    assert hujson.format_path(path) == 'grants[2].app["example.com/cap x"].900'


# --------------------------------------------------------------------------------------------
# set


def test_set_replaces_one_value_and_keeps_every_other_byte() -> None:
    """Only the addressed value's characters change; comments and layout stay."""
    text = '{\n  // why\n  "a": /* old */ 1, // after\n  "b": [1, 2],\n}\n'
    assert hujson.set(text, ("A",), {"x": True}) == text.replace("1,", '{"x": true},', 1)


def test_set_of_an_equal_value_changes_nothing_but_types_count() -> None:
    """Equal content returns the text as is; 1 vs 1.0 vs true is a change."""
    text = '{"a": 1, "b": [1, {"c": null}]}'
    assert hujson.set(text, ("b",), [1, {"c": None}]) == text
    assert hujson.set(text, ("b",), (1, {"c": None})) == text
    assert hujson.set(text, ("a",), 1.0) == '{"a": 1.0, "b": [1, {"c": null}]}'
    assert hujson.set(text, ("a",), True) == '{"a": true, "b": [1, {"c": null}]}'


def test_set_adds_a_missing_member_with_the_callers_spelling() -> None:
    """A missing field is added at the end of its object, spelled as the caller wrote it."""
    text = '{\n    "acls": [],\n}\n'
    assert hujson.set(text, ("derpMap",), {}) == '{\n    "acls": [],\n    "derpMap": {},\n}\n'


def test_set_under_an_other_cased_key_uses_the_files_spelling() -> None:
    """derpmap/regions exist in another case: they are reused, no second spelling is added."""
    text = '{"derpmap": {"regions": {}}}'
    out = hujson.set(text, REGION_900, {"RegionID": 900})
    assert out == '{"derpmap": {"regions": {"900": {"RegionID": 900}}}}'
    assert hujson.set(out, ("DERPMAP", "REGIONS", IntKey(900), "regionid"), 901) == out.replace(
        "900}", "901}"
    )


def test_set_creates_missing_parents_only_when_asked() -> None:
    """Missing objects along the path are created with create_parents, else PathNotFoundError."""
    with pytest.raises(PathNotFoundError, match=r'"derpMap" does not exist .pass create_parents'):
        hujson.set("{}", REGION_900, {})
    out = hujson.set('{"acls": []}', REGION_900, {"RegionID": 900}, create_parents=True)
    assert out == '{"acls": [], "derpMap": {"Regions": {"900": {"RegionID": 900}}}}'


def test_set_does_not_invent_array_elements() -> None:
    """An index past the end is not created (append does that); an existing one is replaced."""
    with pytest.raises(PathNotFoundError, match=r'"grants\[1\]" does not exist'):
        hujson.set('{"grants": [{}]}', ("grants", 1), {})
    with pytest.raises(PathNotFoundError, match=r"cannot be created \(only objects are\)"):
        hujson.set("{}", ("grants", 0), {}, create_parents=True)
    assert hujson.set('{"grants": [{}, 2]}', ("grants", -1), 3) == '{"grants": [{}, 3]}'


def test_set_through_a_scalar_is_a_type_error() -> None:
    """A path that continues below a string cannot be set."""
    with pytest.raises(PathTypeError, match="\"a\" must be an object to look up 'b', found a str"):
        hujson.set('{"a": "x"}', ("a", "b"), 1, create_parents=True)


def test_set_can_replace_the_top_level_value_keeping_comments_around_it() -> None:
    """The empty path is the top-level value; comments before and after it stay."""
    assert hujson.set("// c\n[1] // d\n", (), {"a": 1}) == '// c\n{"a": 1} // d\n'


def test_replaced_values_keep_their_layout() -> None:
    """A one-line object is replaced on one line, a multi-line one by a pretty block."""
    one = '{"r": {"a": 1}}'
    assert hujson.set(one, ("r",), REGION) == '{"r": ' + json.dumps(REGION) + "}"
    multi = '{\n  "r": {\n    "a": 1\n  },\n  "s": 0\n}'
    out = hujson.set(multi, ("r",), REGION)
    assert out.startswith('{\n  "r": {\n    "RegionID": 900,\n    "RegionCode": "homelab",\n')
    assert out.endswith('\n      }\n    ]\n  },\n  "s": 0\n}')
    assert hujson.loads(out) == {"r": REGION, "s": 0}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ({1: "x"}, TypeError),
        ({"a": object()}, TypeError),
        (b"bytes", TypeError),
    ],
)
def test_values_json_cannot_hold_are_refused(value: Any, error: type[Exception]) -> None:
    """NaN, non-string keys and arbitrary objects are never written into the text."""
    with pytest.raises(error):
        hujson.set("{}", ("a",), value)
    with pytest.raises(error):
        hujson.append('{"a": []}', ("a",), value)


def test_values_too_deep_for_the_parser_are_refused() -> None:
    """An edit never produces text that parse would refuse for its nesting."""
    deep: Any = []
    for _ in range(hujson.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(HuJSONError, match="nest deeper than 256"):
        hujson.set("{}", ("a",), deep)
    assert hujson.loads(hujson.set("{}", (), deep)) == deep


def test_surrogates_and_control_characters_are_escaped() -> None:
    """New strings are readable UTF-8, with escapes only where JSON or UTF-8 need them."""
    out = hujson.set("{}", ("k",), "é\n\ud800")
    assert out == '{\n\t"k": "é\\n\\ud800"\n}'
    assert hujson.loads(out) == {"k": "é\n\ud800"}


# --------------------------------------------------------------------------------------------
# remove and append


def test_remove_takes_out_a_middle_member_with_its_comma() -> None:
    """A member between two others goes with its comma; neighbours stay as written."""
    text = '{"901": {}, "900": {"RegionID": 900}, "902": {},}'
    assert hujson.remove(text, (Key("900"),)) == '{"901": {}, "902": {},}'


def test_remove_first_member_of_a_one_line_object_leaves_no_gap() -> None:
    """Removing the first member of `{"a": 1, "b": 2}` gives `{"b": 2}`."""
    assert hujson.remove('{"a": 1, "b": 2}', ("a",)) == '{"b": 2}'
    assert hujson.remove("[1, 2, 3]", (0,)) == "[2, 3]"


def test_remove_last_member_takes_the_comma_before_it() -> None:
    """Without a trailing comma, the previous member's comma goes too (no dangling comma)."""
    text = '{\n  "a": 1,\n  "b": 2\n}'
    assert hujson.remove(text, ("b",)) == '{\n  "a": 1\n}'


def test_remove_keeps_comments_before_the_entry_and_their_line_break() -> None:
    """A `//` comment before the removed entry keeps its newline, so nothing is swallowed."""
    text = '{"a": 1, // note\n"b": 2, "c": 3}'
    out = hujson.remove(text, ("b",))
    assert out == '{"a": 1, // note\n "c": 3}'
    assert hujson.loads(out) == {"a": 1, "c": 3}


def test_remove_array_elements_by_index() -> None:
    """grants[i] (also negative) is removed; an index that is not there is a no-op."""
    text = '{"grants": [\n  {"src": ["a"]},\n  {"src": ["b"]},\n]}'
    assert hujson.remove(text, ("grants", 0)) == '{"grants": [\n  {"src": ["b"]},\n]}'
    assert hujson.remove(text, ("grants", -1)) == '{"grants": [\n  {"src": ["a"]},\n]}'
    assert hujson.remove(text, ("grants", 2)) == text


def test_remove_of_a_missing_path_is_a_no_op() -> None:
    """Removing what is not there returns the text unchanged."""
    assert hujson.remove(DEFAULT_POLICY, REGION_900) == DEFAULT_POLICY
    assert hujson.remove(DEFAULT_POLICY, ("acls", 5)) == DEFAULT_POLICY


def test_remove_refuses_the_top_level_and_ambiguous_paths() -> None:
    """The top-level value cannot go; an ambiguous member is never guessed."""
    with pytest.raises(PathError, match="cannot remove the top-level value"):
        hujson.remove("{}", ())
    with pytest.raises(AmbiguousKeyError):
        hujson.remove('{"a": 1, "A": 2}', ("a",))


def test_append_follows_the_arrays_layout() -> None:
    """A multi-line array gets a new line in its indentation; a one-line array stays one line."""
    text = '{\n\t"grants": [\n\t\t{"src": ["a"]},\n\t],\n\t"x": [1]\n}'
    out = hujson.append(text, ("grants",), GRANT)
    assert out == text.replace('["a"]},\n', '["a"]},\n\t\t' + json.dumps(GRANT) + ",\n")
    assert hujson.append(text, ("X",), 2) == text.replace("[1]", "[1, 2]")


def test_append_to_an_empty_array() -> None:
    """`[]` in a one-line object stays on the line; on a line of its own it becomes a block."""
    assert hujson.append('{"a": [], "b": 1}', ("a",), 1) == '{"a": [1], "b": 1}'
    assert hujson.append('{\n  "a": [],\n}', ("a",), 1) == '{\n  "a": [\n    1\n  ],\n}'


def test_append_creates_a_missing_array_only_when_asked() -> None:
    """grants missing: created with create_parents, else PathNotFoundError; a non-array fails."""
    with pytest.raises(PathNotFoundError, match='"grants" does not exist'):
        hujson.append("{}", ("grants",), GRANT)
    out = hujson.append('{"acls": []}', ("grants",), GRANT, create_parents=True)
    assert hujson.loads(out) == {"acls": [], "grants": [GRANT]}
    with pytest.raises(PathTypeError, match='"acls" must be an array, found an object'):
        hujson.append('{"acls": {}}', ("acls",), GRANT)


# --------------------------------------------------------------------------------------------
# insert then remove gives back the original bytes (examples; the properties below generalize)

INVERSE_CASES = [
    ("{}", ("k",)),
    ("[]", None),
    ("{ }", ("k",)),
    ("{\n}", ("k",)),
    ("{\n    }", ("k",)),
    ('{"a": 1}', ("k",)),
    ('{"a": 1,}', ("k",)),
    ("[1, 2]", None),
    ("[1, 2,]", None),
    ('{\n  "a": 1\n}\n', ("k",)),
    ('{\n  "a": 1,\n}\n', ("k",)),
    ('{\n  "a": 1 // after a\n}\n', ("k",)),
    ('{\n  "a": 1, // after a\n}\n', ("k",)),
    ('{"a": 1 // end of line\n}', ("k",)),
    ('{\n  "a": 1\n  // before the end\n}', ("k",)),
    ('{\n  "a": 1 /* inside */ , /* after */\n}', ("k",)),
    ("{ /* only a comment */ }", ("k",)),
    ("{\n  // only a comment\n}", ("k",)),
    ("[\n\t1 // one\n]", None),
    ('{\r\n    "a": 1 // note\r\n}\r\n', ("k",)),
    ('{\r\n\t"a": [\r\n\t\t1,\r\n\t],\r\n}\r\n', ("a",)),
    ('{"a": {"b": {"c": {"d": [[{"e": {}}]]}}}}', ("a", "b", "c", "d", 0, 0, "e", "k")),
    ('{"\\u0041\\u00e9": {}}', ("aÉ", "k")),
    ('{"x": [], "y": 1}', ("x",)),
    ('{"x": [/* none */], "y": 1}', ("x",)),
]


@pytest.mark.parametrize(("text", "where"), INVERSE_CASES)
@pytest.mark.parametrize("value", [7, REGION, {}, []])
def test_insert_then_remove_gives_back_the_original(
    text: str, where: tuple[Segment, ...] | None, value: Any
) -> None:
    """Adding a member (or array element) and removing it restores every byte."""
    if where is not None and where[-1] == "k":
        edited = hujson.set(text, where, value)
        path = where
    else:
        array: tuple[Segment, ...] = () if where is None else where
        edited = hujson.append(text, array, value)
        path = (*array, -1)
    assert j5(edited) == hujson.loads(edited)
    found = hujson.find(edited, path)
    assert found is not None and found.value == value
    assert hujson.remove(edited, path) == text


# --------------------------------------------------------------------------------------------
# layout of inserted values


def test_crlf_files_stay_crlf() -> None:
    """Every line break an edit adds to a CRLF file is CRLF, and `//` comments stay whole."""
    text = '{\r\n    "a": 1 // note\r\n}\r\n'
    out = hujson.set(text, REGION_900, REGION, create_parents=True)
    assert "\n" not in out.replace("\r\n", "")
    assert out.startswith('{\r\n    "a": 1, // note\r\n    "derpMap": {\r\n        "Regions": {')


@pytest.mark.parametrize("unit", ["\t", "  ", "    ", " "])
def test_the_files_indentation_unit_is_used(unit: str) -> None:
    """Tabs or 1, 2, 4 spaces: new blocks indent by the file's own step."""
    text = "{\n" + unit + '"a": {\n' + unit * 2 + '"b": 1\n' + unit + "}\n}\n"
    out = hujson.set(text, ("a", "c"), {"d": "x" * 80})
    assert out == text.replace(
        '"b": 1\n',
        '"b": 1,\n' + unit * 2 + '"c": {\n' + unit * 3 + f'"d": "{"x" * 80}"\n' + unit * 2 + "}\n",
    )


def test_one_line_objects_stay_on_one_line() -> None:
    """A policy written on one line gets its new member on the same line, however big."""
    text = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'
    out = hujson.set(text, REGION_900, REGION, create_parents=True)
    assert "\n" not in out and hujson.loads(out)["derpMap"]["Regions"]["900"] == REGION


def test_new_values_are_inline_up_to_80_columns_like_hujsonfmt() -> None:
    """Short objects and arrays are written on one line, longer ones one entry per line."""
    out = hujson.set("{}", ("grant",), GRANT)
    assert out == '{\n\t"grant": ' + json.dumps(GRANT) + "\n}"
    out = hujson.set("{}", ("long",), ["x" * 40, "y" * 40])
    assert out == '{\n\t"long": [\n\t\t"' + "x" * 40 + '",\n\t\t"' + "y" * 40 + '"\n\t]\n}'


# --------------------------------------------------------------------------------------------
# the derpMap splices of components/derpmap.py, written with this API


def test_derp_map_goes_into_the_default_policy_in_its_style_and_comes_out_again() -> None:
    """The console's policy gains a tab-indented derpMap at its end; removal undoes it."""
    block = {"OmitDefaultRegions": False, "Regions": {"900": REGION}}
    out = hujson.set(DEFAULT_POLICY, ("derpMap",), block)
    assert out.startswith(DEFAULT_POLICY[: DEFAULT_POLICY.rindex("}")])
    assert '\n\t"derpMap": {\n\t\t"OmitDefaultRegions": false,\n\t\t"Regions": {\n' in out
    assert '\n\t\t\t"900": {\n\t\t\t\t"RegionID": 900,' in out
    assert out.endswith("\t},\n}\n")
    assert j5(out)["derpMap"] == block
    assert hujson.remove(out, ("derpMap",)) == DEFAULT_POLICY


def test_region_goes_next_to_another_stacks_region_and_its_comment() -> None:
    """An existing region and its comment stay; ours follows; removing ours restores the text."""
    text = (
        '{\n  "derpMap": {\n    "OmitDefaultRegions": true,\n    "Regions": {\n'
        '      // office relay\n      "901": {"RegionID": 901, "Nodes": []}\n    }\n  }\n}\n'
    )
    out = hujson.set(text, REGION_900, REGION)
    assert '      // office relay\n      "901": {"RegionID": 901, "Nodes": []},\n' in out
    assert '      "900": {\n        "RegionID": 900,' in out
    assert list(j5(out)["derpMap"]["Regions"]) == ["901", "900"]
    assert hujson.remove(out, REGION_900) == text


def test_empty_regions_grow_into_a_block_and_shrink_back() -> None:
    """`"Regions": {}` on its own line becomes a block with our region, and `{}` again."""
    text = '{\n  "derpMap": {\n    "Regions": {},\n  },\n}\n'
    out = hujson.set(text, REGION_900, REGION)
    assert '    "Regions": {\n      "900": {\n' in out and "\n    },\n  },\n}\n" in out
    assert hujson.remove(out, REGION_900) == text


# --------------------------------------------------------------------------------------------
# properties over generated documents

# Characters whose case classes (Go's unicode.SimpleFold orbits) are known: ASCII letters and a
# few non-ASCII classes, plus caseless characters and look-alikes that do NOT fold together.
_CASE_CLASSES = [
    *({c, c.upper()} for c in "abcdefghijlmnopqrtuvwxyz"),
    {"k", "K", "\u212a"},
    {"s", "S", "\u017f"},
    {"\u03c3", "\u03a3", "\u03c2"},
    {"\u00df", "\u1e9e"},
    {"\u00b5", "\u039c", "\u03bc"},
    {"\u00e5", "\u00c5", "\u212b"},
    {"\u01c4", "\u01c5", "\u01c6"},
    *({c} for c in '0123456789:/._-@ \u0131\u0130\u4e2d\U0001f600\u00e9"\\\n'),
]
_CLASS_OF = {ch: sorted(cls) for cls in _CASE_CLASSES for ch in cls}
_key_chars = st.sampled_from(sorted(_CLASS_OF))
_keys = st.text(_key_chars, max_size=6)

_comment_text = st.text(
    # No line separators: json5 ends `//` comments at them, HuJSON only at LF.
    alphabet=st.characters(
        blacklist_categories=["Cs", "Cc", "Zl", "Zp"], blacklist_characters="*/"
    ),
    max_size=6,
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=6),
)


def _class_fold(key: str) -> str:
    """The key with every character replaced by its class's first (independent of hujson)."""
    return "".join(_CLASS_OF[ch][0] for ch in key)


def _unique_fold(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The pairs without any whose key folds like an earlier one (no ambiguity by accident)."""
    seen: dict[str, None] = {}
    out = []
    for key, value in pairs:
        if _class_fold(key) not in seen:
            seen[_class_fold(key)] = None
            out.append((key, value))
    return out


# Objects are lists of (key, value) pairs so documents can hold what dicts cannot.
_trees = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.builds(
            lambda pairs: ("object", _unique_fold(pairs)),
            st.lists(st.tuples(_keys, inner), max_size=3),
        ),
    ),
    max_leaves=10,
)


def _plain(tree: Any) -> Any:
    """A generated tree as loads should read it."""
    if isinstance(tree, tuple):
        return {key: _plain(value) for key, value in tree[1]}
    if isinstance(tree, list):
        return [_plain(item) for item in tree]
    return tree


class _Writer:
    """Writes a tree as HuJSON: per container one-line or one entry per line, in an indentation
    unit, with drawn comments and whitespace in every gap and drawn trailing commas."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.nl = draw(st.sampled_from(["\n", "\r\n"]))
        self.unit = draw(st.sampled_from(["\t", "  ", "    ", " "]))
        self.markers = 0

    def gap(self, level: int) -> str:
        parts = []
        for _ in range(self.draw(st.integers(0, 2))):
            kind = self.draw(st.sampled_from(["space", "newline", "line", "block"]))
            if kind in ("line", "block"):
                self.markers += 1
                body = f"@{self.markers}~{self.draw(_comment_text)}"
                if kind == "line":
                    parts.append(f"//{body}{self.nl}{self.unit * level}")
                else:
                    parts.append(f"/*{body}*/")
            else:
                parts.append(" " if kind == "space" else self.nl + self.unit * level)
        return "".join(parts)

    def key(self, key: str) -> str:
        return json.dumps(key, ensure_ascii=self.draw(st.booleans()))

    def write(self, tree: Any, level: int = 0) -> str:
        if isinstance(tree, tuple | list):
            is_object = isinstance(tree, tuple)
            entries = tree[1] if is_object else tree
            multiline = bool(entries) and self.draw(st.booleans())
            lead = self.nl + self.unit * (level + 1) if multiline else ""
            parts = []
            for entry in entries:
                if is_object:
                    key, value = entry
                    text = (
                        self.key(key)
                        + self.gap(level + 1)
                        + ":"
                        + self.gap(level + 1)
                        + self.write(value, level + 1)
                    )
                else:
                    text = self.write(entry, level + 1)
                parts.append(self.gap(level + 1) + lead + text + self.gap(level + 1))
            comma: bool = self.draw(st.booleans())
            trailing = "," if parts and comma else ""
            closing = self.gap(level + 1) + (self.nl + self.unit * level if multiline else "")
            open_, close = "{}" if is_object else "[]"
            return open_ + ",".join(parts) + trailing + closing + close
        if isinstance(tree, str):
            return self.key(tree)
        return json.dumps(tree)


@st.composite
def documents(draw: st.DrawFn, *, top_object: bool = True) -> tuple[str, Any]:
    """(HuJSON text, its generated tree); the top level is an object like a policy's."""
    tree = draw(_trees)
    if top_object and not isinstance(tree, tuple):
        tree = ("object", [("rules", tree)])
    writer = _Writer(draw)
    text = writer.gap(0) + writer.write(tree) + writer.gap(0) + draw(st.sampled_from(["", "\n"]))
    return text, tree


def _paths(tree: Any, path: tuple[Segment, ...] = ()) -> list[tuple[tuple[Segment, ...], Any]]:
    """Every (path, subtree) of a tree, the top level first; keys as written."""
    out = [(path, tree)]
    if isinstance(tree, tuple):
        for key, value in tree[1]:
            out += _paths(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _paths(value, (*path, i))
    return out


def _recase(
    draw: Callable[[st.SearchStrategy[Any]], Any], path: tuple[Segment, ...]
) -> tuple[Segment, ...]:
    """The path with each field name in a random spelling of the same fold class."""
    out: list[Segment] = []
    for segment in path:
        if isinstance(segment, str):
            segment = "".join(draw(st.sampled_from(_CLASS_OF[ch])) for ch in segment)
        out.append(segment)
    return tuple(out)


def _markers(text: str) -> list[str]:
    return re.findall(r"(?<=[/*])@\d+~", text)


def _put(value: Any, path: tuple[Segment, ...], new: Any) -> Any:
    """A copy of a plain value with ``new`` at ``path`` (keys as written)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _put(value.get(head), rest, new)}
    assert isinstance(head, int)
    return [_put(v, rest, new) if i == head else v for i, v in enumerate(value)]


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(documents(top_object=False))
def test_parse_agrees_with_json5_and_the_generator(case: tuple[str, Any]) -> None:
    """Generated HuJSON reads as the value it was written from, and json5 reads the same."""
    text, tree = case
    assert hujson.loads(text) == j5(text) == _plain(tree)


@_settings
@given(documents(), st.data())
def test_insert_then_remove_is_byte_exact(case: tuple[str, Any], data: st.DataObject) -> None:
    """Add a member or element anywhere (path in any case): only it is new; removal restores."""
    text, tree = case
    containers = [(p, t) for p, t in _paths(tree) if isinstance(t, tuple | list)]
    path, target = data.draw(st.sampled_from(containers))
    value = data.draw(_trees.map(_plain))
    asked = _recase(data.draw, path)
    if isinstance(target, tuple):
        taken = {_class_fold(key) for key, _ in target[1]}
        key = data.draw(_keys.filter(lambda k: _class_fold(k) not in taken))
        edited = hujson.set(text, (*asked, key), value)
        added: tuple[Segment, ...] = (*path, key)
        expected = _put(_plain(tree), added, value)
    else:
        edited = hujson.append(text, asked, value)
        added = (*path, len(target))
        expected = _put(_plain(tree), path, [*_plain(target), value])
    assert hujson.loads(edited) == j5(edited) == expected
    assert _markers(edited) == _markers(text)
    assert hujson.remove(edited, added) == text
    assert hujson.remove(edited, (*asked, added[-1] if isinstance(target, tuple) else -1)) == text


@_settings
@given(documents(), st.data())
def test_set_changes_exactly_the_addressed_value(
    case: tuple[str, Any], data: st.DataObject
) -> None:
    """set rewrites one value: the rest reads the same and every comment outside it is kept
    (an equal value leaves the text as it is)."""
    text, tree = case
    path, _ = data.draw(st.sampled_from(_paths(tree)))
    value = data.draw(_trees.map(_plain))
    found = hujson.find(text, path)
    assert found is not None
    outside = _markers(text[: found.node.start]) + _markers(text[found.node.end :])
    edited = hujson.set(text, _recase(data.draw, path), value)
    assert hujson.loads(edited) == j5(edited) == _put(_plain(tree), path, value)
    if json.dumps(found.value) == json.dumps(value):  # the same value, types and order included
        assert edited == text
    else:
        assert _markers(edited) == outside
    again = hujson.find(edited, path)
    assert again is not None and again.path == found.path and again.value == value


@_settings
@given(documents(), st.data())
def test_remove_takes_out_exactly_one_entry(case: tuple[str, Any], data: st.DataObject) -> None:
    """remove drops one member or element; comments outside its text are all kept."""
    text, tree = case
    entries = [(p, t) for p, t in _paths(tree) if p]
    assume(entries)
    path, _ = data.draw(st.sampled_from(entries))
    found = hujson.find(text, path)
    assert found is not None and found.entry is not None
    keep = _markers(text[: found.entry.start]) + _markers(text[found.entry.end :])
    edited = hujson.remove(text, _recase(data.draw, path))
    parent = _plain(dict(_paths(tree))[path[:-1]])
    if isinstance(parent, dict):
        reduced: Any = {k: v for k, v in parent.items() if k != path[-1]}
    else:
        reduced = [v for i, v in enumerate(parent) if i != path[-1]]
    assert hujson.loads(edited) == j5(edited) == _put(_plain(tree), path[:-1], reduced)
    assert _markers(edited) == keep


@_settings
@given(documents(), st.data())
def test_fields_are_found_under_any_casing(case: tuple[str, Any], data: st.DataObject) -> None:
    """Every value is found, at the same place, whatever case the path's field names are in."""
    text, tree = case
    path, subtree = data.draw(st.sampled_from(_paths(tree)))
    found = hujson.find(text, _recase(data.draw, path))
    assert found is not None and found.value == _plain(subtree)
    assert found.path == path  # the file's spelling comes back
    exact = tuple(Key(s) if isinstance(s, str) else s for s in path)
    assert hujson.find(text, exact) is not None


@_settings
@given(documents(), st.data())
def test_a_second_spelling_of_a_key_is_refused(case: tuple[str, Any], data: st.DataObject) -> None:
    """Add a member whose key folds like an existing one: find, set and remove all refuse it."""
    text, tree = case
    objects = [(p, t) for p, t in _paths(tree) if isinstance(t, tuple) and t[1]]
    assume(objects)
    path, target = data.draw(st.sampled_from(objects))
    key = data.draw(st.sampled_from([k for k, _ in target[1]]))
    twin = _recase(data.draw, (key,))[0]
    assert isinstance(twin, str)
    doubled = _put_raw(text, path, twin)
    with pytest.raises(AmbiguousKeyError) as caught:
        hujson.find(doubled, (*path, key))
    assert sorted(k for k, _ in caught.value.spellings) == sorted([key, twin])
    with pytest.raises(AmbiguousKeyError):
        hujson.set(doubled, (*path, key), 1)
    with pytest.raises(AmbiguousKeyError):
        hujson.remove(doubled, (*_recase(data.draw, path), twin))


def _put_raw(text: str, path: tuple[Segment, ...], key: str) -> str:
    """The text with `"key": 0,` written first in the object at ``path`` (no lookup by key)."""
    found = hujson.find(text, tuple(Key(s) if isinstance(s, str) else s for s in path))
    assert found is not None
    at = found.node.start + 1
    return text[:at] + json.dumps(key) + ": 0," + text[at:]
