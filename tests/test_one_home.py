"""Each fact the program depends on is written once; a copy that reappears fails here.

The key table (components/settings/keys.py) holds every default, components/image_reference.py
the one image grammar, components/derpmap.py the one reader of the policy's regions. These tests
look for the facts themselves in the code, so a second home is found whether or not it already
disagrees with the first.
"""

from __future__ import annotations

import re

import pytest

from components import derpmap, image_reference
from components.settings import ACME_DIRECTORIES, KEYS, check_image
from policy import rules
from tests.mocks import ROOT

#: Every Python file of the product (the program, the doctor, the pack, the workflows' scripts).
PRODUCT = [
    *sorted(
        p
        for base in ("components", "policy", ".github/scripts")
        for p in (ROOT / base).rglob("*.py")
        if "__pycache__" not in p.parts
    ),
    ROOT / "__main__.py",
]

#: String defaults long enough to be recognisable (short ones such as "home" or "" are not).
STRING_DEFAULTS = sorted(
    {str(k.default) for k in KEYS if isinstance(k.default, str) and len(str(k.default)) > 12}
)


def _files_containing(text: str) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in PRODUCT if text in p.read_text(encoding="utf-8")]


#: Where a default may also be written, and why: tailscaled's own default socket path is an
#: upstream fact of components/tailscaled.py (asserted equal below); the checker is a leaf that
#: imports nothing of the project, so its --help names the usual Docker socket itself; the doctor's
#: docstring shows an example of its JSON output.
ALSO_WRITTEN = {
    "/var/run/tailscale/tailscaled.sock": {"components/tailscaled.py"},
    "unix:///var/run/docker.sock": {"components/netcheck/cli.py", "components/doctor/__init__.py"},
}


# A key's default string lives in the key table only.
@pytest.mark.parametrize("value", STRING_DEFAULTS)
def test_string_defaults_live_in_the_key_table(value: str) -> None:
    allowed = {"components/settings/keys.py", *ALSO_WRITTEN.get(value, set())}
    assert set(_files_containing(value)) <= allowed, value


def _literal(value: object) -> str:
    """How a default would be written again in Python: 443, "home", True."""
    return repr(value) if not isinstance(value, str) else f"[\"']{re.escape(value)}[\"']"


#: A key read with its default as a literal (``_port(c, "derpPort", 443)``,
#: ``values.get("networkMode") or "host"``): a default that is short or a number cannot be found
#: by its text alone, but it can by the key it stands beside. The settings package is left out: it
#: reads every key through the key table, and its calls pass bounds (``c.integer("peerRelayPort",
#: 0, 65535, …)``) and the values it names in problems.
KEY_WITH_DEFAULT = {
    k.name: re.compile(
        rf"[\"'](?:home-derp:)?{re.escape(k.name)}[\"']\s*(?:,|\)\s*or)\s*"
        rf"{_literal(k.default)}(?![\w.])"
    )
    for k in KEYS
    if k.default not in (None, "")
}


# No product file reads a key with a default of its own (the doctor's `plan.py` once read
# derpPort with its own 443): the key table is the only home of a default.
@pytest.mark.parametrize("name", sorted(KEY_WITH_DEFAULT))
def test_no_default_beside_its_key(name: str) -> None:
    pattern = KEY_WITH_DEFAULT[name]
    found = [
        str(p.relative_to(ROOT))
        for p in PRODUCT
        if "settings" not in p.relative_to(ROOT).parts
        and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert found == [], f"{name}'s default written again in {found}"


# The pattern finds the copies it is for.
def test_default_beside_its_key_is_found() -> None:
    assert KEY_WITH_DEFAULT["derpPort"].search('derp_port=_port(c, "derpPort", 443),')
    assert KEY_WITH_DEFAULT["networkMode"].search('network_mode=c.text("networkMode", "host"),')
    assert KEY_WITH_DEFAULT["networkMode"].search(
        'mode = raw.get("home-derp:networkMode") or "host"'
    )
    assert not KEY_WITH_DEFAULT["derpPort"].search('values.get("derpPort", 4430)')


# The ACME directories are written once.
@pytest.mark.parametrize("url", sorted(ACME_DIRECTORIES.values()))
def test_acme_directories_are_written_once(url: str) -> None:
    assert _files_containing(url) == ["components/settings/keys.py"]


# tailscaled's default socket and the tailscaleSocket default agree.
def test_socket_default_is_tailscaleds() -> None:
    from components import tailscaled
    from components.settings import KEY

    assert KEY["tailscaleSocket"].default == tailscaled.DEFAULT_SOCKET


# One image grammar: settings and the policy pack refuse and accept the same references.
@pytest.mark.parametrize(
    "reference",
    [
        "Derper:v1",
        "derper:v1",
        "derper",
        "derper:latest",
        "ghcr.io/fredliang44/derper:v1.90.6",
        "ghcr.io/x/derper@sha256:" + "a" * 64,
        "localhost:5000/derper:v1",
        "library/golang:1.26-alpine",
        "UPPER/derper:v1",
    ],
)
def test_settings_and_the_pack_read_images_alike(reference: str) -> None:
    assert (check_image(reference) is None) == (rules.image_pin_problem(reference) is None)
    assert check_image(reference) == image_reference.pin_problem(reference)


# No regular expression for image references outside the one grammar.
def test_no_second_image_grammar() -> None:
    pattern = re.compile(r"sha256:\[0-9a-f\]\{64\}")
    found = [
        str(p.relative_to(ROOT)) for p in PRODUCT if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert found == ["components/image_reference.py"]


# The policy's regions are read by one function, as the control plane reads them: "0900" is
# region 900 for the program, the doctor and the pack alike.
def test_region_keys_read_as_go_reads_them() -> None:
    text = '{"derpMap": {"Regions": {"0900": {"RegionID": 900, "Nodes": []}}}}'
    assert list(derpmap.regions(text)) == [900]
    assert derpmap.find_region(text, 900) is not None


# Two spellings of one struct field, or two keys of one region, are refused by every reader.
@pytest.mark.parametrize(
    "text",
    [
        '{"derpMap": {"Regions": {"901": {}}, "regions": {"902": {}}}}',
        '{"derpMap": {"Regions": {"900": {"RegionID": 900}, "0900": {"RegionID": 900}}}}',
    ],
    ids=["two spellings", "one region twice"],
)
def test_ambiguous_policies_are_refused_alike(text: str) -> None:
    with pytest.raises(derpmap.PolicyTextError):
        derpmap.regions(text)
    assert rules.derp_map_problems(text), "the pack must not read it silently"
    from components.doctor import tailnet_checks

    with pytest.raises(derpmap.PolicyTextError):
        tailnet_checks.free_region_id(text)


# The doctor's free id skips a region written "0900" (it used to suggest 900 again).
def test_doctor_free_region_id_reads_0900_as_900() -> None:
    from components.doctor import tailnet_checks

    text = '{"derpMap": {"Regions": {"0900": {"RegionID": 900}}}}'
    assert tailnet_checks.free_region_id(text) == 901


def test_product_files_found() -> None:
    assert any(p.name == "keys.py" for p in PRODUCT) and len(PRODUCT) > 40
