"""Stack config rules: every bad value fails before any resource, naming key, value and fix."""

from __future__ import annotations

import pulumi
import pytest

from components.settings import (
    DEFAULT_IMAGE,
    ConfigError,
    Ipv6Discovery,
    check_image,
    check_ipv6,
    parse_settings,
)
from tests.conftest import RelayMocks, home_config, run_program, set_config

TOKEN = pulumi.Output.secret("token")

# (case id, overrides of Pulumi.home.yaml, key the message must name, words it must contain)
BAD_CONFIGS: list[tuple[str, dict[str, str | None], str, str]] = [
    ("hostname missing", {"hostname": None}, "home-derp:hostname", "required"),
    ("hostname single label", {"hostname": "derp"}, "home-derp:hostname", "fully qualified"),
    ("hostname bad label", {"hostname": "de_rp.example.com"}, "home-derp:hostname", "label"),
    ("hostname dash", {"hostname": "-derp.example.com"}, "home-derp:hostname", "label"),
    ("hostname outside zone", {"hostname": "derp.example.org"}, "home-derp:hostname", "zone"),
    (
        "hostname is an IP",
        {"hostname": "10.0.0.1", "zone": None, "zoneId": "0" * 32},
        "home-derp:hostname",
        "IP address",
    ),
    ("zone and zoneId missing", {"zone": None}, "home-derp:zone", "zoneId"),
    ("zoneId malformed", {"zone": None, "zoneId": "not-an-id"}, "home-derp:zoneId", "32"),
    ("ipv6 missing", {"ipv6": None}, "home-derp:ipv6", "required"),
    ("ipv6 garbage", {"ipv6": "2409::zz"}, "home-derp:ipv6", "not an IPv6"),
    ("ipv6 link-local", {"ipv6": "fe80::1"}, "home-derp:ipv6", "link-local"),
    ("ipv6 ULA", {"ipv6": "fd12:3456:789a::1"}, "home-derp:ipv6", "unique local"),
    ("ipv6 loopback", {"ipv6": "::1"}, "home-derp:ipv6", "loopback"),
    ("ipv6 multicast", {"ipv6": "ff02::1"}, "home-derp:ipv6", "multicast"),
    ("ipv6 unspecified", {"ipv6": "::"}, "home-derp:ipv6", "unspecified"),
    ("ipv6 v4-mapped", {"ipv6": "::ffff:203.0.113.9"}, "home-derp:ipv6", "IPv4-mapped"),
    ("ipv6 documentation", {"ipv6": "2001:db8::10"}, "home-derp:ipv6", "documentation"),
    ("ipv6 given an IPv4", {"ipv6": "198.51.100.7"}, "home-derp:ipv6", "not an IPv6"),
    ("ipv4 private", {"ipv4": "192.168.1.10"}, "home-derp:ipv4", "private"),
    ("ipv4 CGNAT", {"ipv4": "100.72.1.1"}, "home-derp:ipv4", "carrier-grade"),
    ("ipv4 garbage", {"ipv4": "1.2.3"}, "home-derp:ipv4", "not an IPv4"),
    ("derpPort 80", {"derpPort": "80"}, "home-derp:derpPort", "TLS"),
    ("derpPort zero", {"derpPort": "0"}, "home-derp:derpPort", "1-65535"),
    ("derpPort too big", {"derpPort": "70000"}, "home-derp:derpPort", "1-65535"),
    ("derpPort text", {"derpPort": "https"}, "home-derp:derpPort", "1-65535"),
    ("stunPort negative", {"stunPort": "-1"}, "home-derp:stunPort", "1-65535"),
    ("regionId low", {"regionId": "1"}, "home-derp:regionId", "900-999"),
    ("regionId high", {"regionId": "1000"}, "home-derp:regionId", "900-999"),
    ("regionCode upper", {"regionCode": "HomeLab"}, "home-derp:regionCode", "lowercase"),
    ("regionCode space", {"regionCode": "home lab"}, "home-derp:regionCode", "lowercase"),
    ("regionName too long", {"regionName": "x" * 65}, "home-derp:regionName", "64"),
    (
        "verifyClients not bool",
        {"verifyClients": "sometimes"},
        "home-derp:verifyClients",
        "true or false",
    ),
    ("acmeServer unknown", {"acmeServer": "letsencrypt"}, "home-derp:acmeServer", "staging"),
    (
        "acmeServer http",
        {"acmeServer": "http://ca.example.com/dir"},
        "home-derp:acmeServer",
        "https://",
    ),
    ("acmeEmail malformed", {"acmeEmail": "me-at-example"}, "home-derp:acmeEmail", "e-mail"),
    (
        "dockerHost scheme",
        {"dockerHost": "npipe:////./pipe/docker"},
        "home-derp:dockerHost",
        "unix://",
    ),
    ("dockerHost ssh no host", {"dockerHost": "ssh://"}, "home-derp:dockerHost", "host"),
    ("dockerHost tcp no port", {"dockerHost": "tcp://home.lan"}, "home-derp:dockerHost", "port"),
    (
        "dockerHost unix relative",
        {"dockerHost": "unix://docker.sock"},
        "home-derp:dockerHost",
        "absolute",
    ),
    ("image latest", {"image": "fredliang/derper:latest"}, "home-derp:image", "latest"),
    ("image untagged", {"image": "fredliang/derper"}, "home-derp:image", "not pinned"),
    ("image garbage", {"image": "Fred Liang/derper"}, "home-derp:image", "image reference"),
    ("networkMode unknown", {"networkMode": "macvlan"}, "home-derp:networkMode", "host, bridge"),
    ("pinIpv6 not bool", {"pinIpv6": "maybe"}, "home-derp:pinIpv6", "true or false"),
    (
        "omitDefaultRegions not bool",
        {"omitDefaultRegions": "2"},
        "home-derp:omitDefaultRegions",
        "true or false",
    ),
    ("validate unknown", {"validate": "strict"}, "home-derp:validate", "enforce, warn, off"),
    ("validateTimeout huge", {"validateTimeout": "99999"}, "home-derp:validateTimeout", "0-1800"),
    (
        "tailnetPolicy unknown",
        {"tailnetPolicy": "overwrite"},
        "home-derp:tailnetPolicy",
        "patch, file, off",
    ),
    ("policyFile missing", {"tailnetPolicy": "file"}, "home-derp:policyFile", "required"),
    (
        "policyFile absent",
        {"tailnetPolicy": "file", "policyFile": "no/such/policy.hujson"},
        "home-derp:policyFile",
        "no such file",
    ),
    ("ddns with pin", {"ddns": "true", "pinIpv6": "true"}, "home-derp:pinIpv6", "stale"),
    (
        "auto over tcp",
        {"ipv6": "auto", "dockerHost": "tcp://home.lan:2376"},
        "home-derp:ipv6",
        "ssh://",
    ),
    ("typo key", {"derpport": "443"}, "home-derp:derpport", "did you mean home-derp:derpPort"),
    (
        "tailscale credentials missing",
        {"tailscale:apiKey": None},
        "tailscale:apiKey",
        "home-derp:tailnetPolicy off",
    ),
    (
        "tailscale oauth half set",
        {"tailscale:apiKey": None, "tailscale:oauthClientId": "k123"},
        "tailscale:apiKey",
        "oauthClientSecret",
    ),
    (
        "cloudflare token missing",
        {"cloudflare:apiToken": None},
        "cloudflare:apiToken",
        "pulumi config set --secret cloudflare:apiToken",
    ),
]


# Each bad value stops `pulumi up` with a message naming the key and the fix; nothing registered.
@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [pytest.param(o, k, w, id=i) for i, o, k, w in BAD_CONFIGS],
)
def test_bad_config_fails_before_any_resource(
    mocks: RelayMocks,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, str | None],
    key: str,
    words: str,
) -> None:
    for env in ("CLOUDFLARE_API_TOKEN", "TAILSCALE_API_KEY", "TAILSCALE_OAUTH_CLIENT_SECRET"):
        monkeypatch.delenv(env, raising=False)
    set_config(home_config(**overrides))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    with pytest.raises(pulumi.RunError) as failure:
        run()
    message = str(failure.value)
    assert key in message
    assert words in message
    assert mocks.resources == []


# The table is as large as the issue asks (floor: 25 distinct bad configs).
def test_bad_config_table_is_large_enough() -> None:
    assert len({case[0] for case in BAD_CONFIGS}) >= 25


# Several problems are reported together, so the user fixes the stack file in one pass.
def test_all_problems_reported_at_once() -> None:
    raw = {"hostname": "derp", "ipv6": "fe80::1", "derpPort": "80", "regionId": "5"}
    with pytest.raises(ConfigError) as failure:
        parse_settings(raw, cloudflare_api_token=None)
    keys = ["hostname", "zone", "ipv6", "derpPort", "regionId", "cloudflare:apiToken"]
    assert len(failure.value.problems) == len(keys)
    for key in keys:
        assert key in str(failure.value)


# Defaults match the issue: port 443/3478, region 900 "home", verification on, host networking.
def test_defaults() -> None:
    settings = parse_settings(
        {"hostname": "Derp.Example.com.", "zone": "example.com", "ipv6": "2409:8A00::10"},
        cloudflare_api_token=TOKEN,
    )
    assert settings.hostname == "derp.example.com"
    assert settings.ipv6 == "2409:8a00::10"
    assert (settings.derp_port, settings.stun_port) == (443, 3478)
    assert (settings.region_id, settings.region_code, settings.region_name) == (900, "home", "Home")
    assert settings.verify_clients and not settings.pin_ipv6 and not settings.omit_default_regions
    assert settings.network_mode == "host"
    assert settings.acme_server_url == "https://acme-v02.api.letsencrypt.org/directory"
    assert settings.docker_host == "unix:///var/run/docker.sock"
    assert settings.image == DEFAULT_IMAGE
    assert (settings.validate, settings.tailnet_policy, settings.ddns) == (
        "enforce",
        "patch",
        False,
    )
    assert settings.ddns_api_token is TOKEN
    assert settings.addresses == ("2409:8a00::10",)


# Legal values across every key are accepted (ssh docker host, staging ACME, digest image, bridge).
def test_full_config_accepted() -> None:
    digest = "sha256:" + "ab" * 32
    settings = parse_settings(
        {
            "hostname": "relay.home.example.net",
            "zoneId": "0123456789abcdef0123456789abcdef",
            "ipv6": "2a01:4f8:c0c:1234::2",
            "ipv4": "203.0.114.7",
            "derpPort": "12345",
            "stunPort": "3479",
            "regionId": "999",
            "regionCode": "office-2",
            "regionName": "Office (2nd)",
            "verifyClients": "false",
            "acmeServer": "staging",
            "acmeEmail": "ops@example.net",
            "dockerHost": "ssh://pi@home.lan:2222",
            "image": f"ghcr.io/yangchuansheng/derper@{digest}",
            "networkMode": "bridge",
            "pinIpv6": "true",
            "omitDefaultRegions": "true",
            "validate": "warn",
            "validateTimeout": "30",
            "validateNonce": "run-42",
            "tailnetPolicy": "off",
        },
        cloudflare_api_token=TOKEN,
    )
    assert settings.zone is None and settings.zone_id == "0123456789abcdef0123456789abcdef"
    assert settings.addresses == ("2a01:4f8:c0c:1234::2", "203.0.114.7")
    assert settings.acme_server_url.startswith("https://acme-staging-v02")
    assert settings.network_mode == "bridge" and settings.pin_ipv6
    assert any("bridge" in w for w in settings.warnings)
    assert any("verifyClients=false" in w for w in settings.warnings)


# ipv6=auto takes the discovered address; a discovery failure is reported under the ipv6 key.
def test_ipv6_auto_uses_discovery() -> None:
    calls: list[tuple[str, str | None]] = []

    def discover(host: str, interface: str | None) -> Ipv6Discovery:
        calls.append((host, interface))
        return Ipv6Discovery("2409:8a00:1:2::5", "eth0", "stable (EUI-64)")

    raw = {"hostname": "derp.example.com", "zone": "example.com", "ipv6": "auto"}
    settings = parse_settings(
        {**raw, "ipv6Interface": "eth0", "dockerHost": "ssh://me@host"},
        cloudflare_api_token=TOKEN,
        discover_ipv6=discover,
    )
    assert settings.ipv6 == "2409:8a00:1:2::5" and settings.ipv6_mode == "auto"
    assert calls == [("ssh://me@host", "eth0")]

    def broken(host: str, interface: str | None) -> Ipv6Discovery:
        raise RuntimeError("ssh: connect to host host port 22: Connection refused")

    with pytest.raises(ConfigError, match=r"home-derp:ipv6 = 'auto': no usable address.*refused"):
        parse_settings(raw, cloudflare_api_token=TOKEN, discover_ipv6=broken)


# Without a policy to write, no Tailscale credentials are needed; OAuth clients work too.
@pytest.mark.parametrize(
    "overrides",
    [
        {"tailscale:apiKey": None, "tailnetPolicy": "off"},
        {
            "tailscale:apiKey": None,
            "tailscale:oauthClientId": "k123",
            "tailscale:oauthClientSecret": "tskey-client-x",
        },
    ],
)
def test_tailscale_credentials_not_needed_or_oauth(
    mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str | None]
) -> None:
    monkeypatch.delenv("TAILSCALE_API_KEY", raising=False)
    set_config(home_config(**overrides))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    run()
    assert mocks.of_type("docker:index/container:Container")


# The env var is an alternative to the secret config, as for the Cloudflare provider itself.
def test_token_from_environment(mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "from-env")
    set_config(home_config(**{"cloudflare:apiToken": None}))

    @pulumi.runtime.test
    def run() -> None:
        run_program()

    run()
    assert mocks.of_type("cloudflare:index/dnsRecord:DnsRecord")


# Pure rules: the pinned-image and IPv6 checks accept what they should.
@pytest.mark.parametrize(
    "image",
    [
        DEFAULT_IMAGE,
        "ghcr.io/fredliang44/derper:v1.90.6",
        "localhost:5000/derper:1.2",
        "a/b@sha256:" + "0" * 64,
    ],
)
def test_pinned_images_accepted(image: str) -> None:
    assert check_image(image) is None


@pytest.mark.parametrize("address", ["2409:8a00::1", "2a01:4f8::2", "2400:cb00:2049:1::a29f:1"])
def test_global_ipv6_accepted(address: str) -> None:
    assert check_ipv6(address) is None
