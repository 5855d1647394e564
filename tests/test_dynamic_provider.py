"""The dynamic providers' shared base (components/dynamic_provider.py): stable names in the stack
state, older stacks' pickles still loading, a stored reference refreshed without side effects,
and the project's errors reaching the user as their message.

The providers run in the real ``python -m pulumi.dynamic`` process (tests/provider_host.py); the
pickles older releases stored are the literal blobs they wrote (serialised by the code of release
830c5a8 with this SDK and dill).
"""

from __future__ import annotations

import base64
import importlib
import pickle
import sys
import traceback
import types
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components import dynamic_provider
from components.dynamic_provider import PROVIDERS, HomeDerpProvider, readable_errors, restore
from components.errors import HomeDerpError
from components.peer_relay import INPUT_KEYS as PEER_RELAY_INPUTS
from components.peer_relay import TYPE_TOKEN as PEER_RELAY_TYPE
from tests.provider_host import UNKNOWN, ProviderHost, urn_for

#: What stacks deployed before the stable names hold in ``__provider`` (class paths).
OLD_BLOBS = {
    "components.validation.RelayValidationProvider": (
        "gASVOwAAAAAAAACMFWNvbXBvbmVudHMudmFsaWRhdGlvbpSMF1JlbGF5VmFsaWRhdGlvblBy"
        "b3ZpZGVylJOUKYGUfZRiLg=="
    ),
    "components.tailnet.TailnetDerpRegionProvider": (
        "gASVOgAAAAAAAACMEmNvbXBvbmVudHMudGFpbG5ldJSMGVRhaWxuZXREZXJwUmVnaW9uUHJv"
        "dmlkZXKUk5QpgZR9lGIu"
    ),
    "components.tailnet.TailnetPeerRelayGrantProvider": (
        "gASVPgAAAAAAAACMEmNvbXBvbmVudHMudGFpbG5ldJSMHVRhaWxuZXRQZWVyUmVsYXlHcmFu"
        "dFByb3ZpZGVylJOUKYGUfZRiLg=="
    ),
    "components.peer_relay.PeerRelayServerProvider": (
        "gASVOAAAAAAAAACMFWNvbXBvbmVudHMucGVlcl9yZWxheZSMF1BlZXJSZWxheVNlcnZlclBy"
        "b3ZpZGVylJOUKYGULg=="
    ),
    "components.gate.RelayHealthGateProvider": (
        "gASVMgAAAAAAAACMD2NvbXBvbmVudHMuZ2F0ZZSMF1JlbGF5SGVhbHRoR2F0ZVByb3ZpZGVylJOUKYGULg=="
    ),
}


def classes() -> list[type[HomeDerpProvider]]:
    for target in PROVIDERS.values():
        importlib.import_module(target.partition(":")[0])
    found: list[type[HomeDerpProvider]] = []
    todo = list(HomeDerpProvider.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "NAME" in vars(cls):
            found.append(cls)
    return found


# Every provider of the project has a stable name, and each name restores its own class.
def test_every_provider_is_registered() -> None:
    registered = {cls.NAME: cls for cls in classes()}
    assert set(registered) == set(PROVIDERS)
    for name, cls in registered.items():
        assert type(restore(name)) is cls


# A provider pickles as `restore("<name>")`: no module path, no state, the same bytes every run.
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_pickle_is_the_stable_name(name: str) -> None:
    provider = restore(name)
    blob = base64.b64decode(serialize_provider(provider))
    assert blob == base64.b64decode(serialize_provider(restore(name)))
    module = PROVIDERS[name].partition(":")[0]
    assert module.encode() not in blob and b"components.dynamic_provider" in blob
    assert type(dill.loads(blob)) is type(provider)


# Older stacks' pickles (class paths) still load: those paths stay importable.
@pytest.mark.parametrize("path", sorted(OLD_BLOBS))
def test_older_stacks_pickles_still_load(path: str) -> None:
    loaded = pickle.loads(base64.b64decode(OLD_BLOBS[path]))
    assert f"{type(loaded).__module__}.{type(loaded).__qualname__}" == path
    assert isinstance(loaded, HomeDerpProvider)


# A moved class: the old name resolves through the registry, wherever the class lives now.
def test_a_moved_class_is_found_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from components import gate

    moved = types.ModuleType("components_elsewhere")
    moved.Gate = gate.RelayHealthGateProvider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "components_elsewhere", moved)
    blob = serialize_provider(restore("RelayHealthGate"))
    monkeypatch.delattr(gate, "RelayHealthGateProvider")
    monkeypatch.setitem(PROVIDERS, "RelayHealthGate", "components_elsewhere:Gate")
    assert isinstance(dill.loads(base64.b64decode(blob)), moved.Gate)


# An older stack's reference differs from the one the program sends: the diff reports a change,
# and the update it causes keeps every output and does nothing on the host (the ssh:// host
# here does not exist: any command would fail the update).
def test_older_reference_is_refreshed_without_side_effects() -> None:
    urn = urn_for(PEER_RELAY_TYPE, "relay-900-peer-relay")
    inputs = {
        "docker_host": "ssh://nobody@relay.invalid",
        "socket": "/var/run/tailscale/tailscaled.sock",
        "port": 40000,
        "static_endpoints": [],
    }
    assert set(inputs) == set(PEER_RELAY_INPUTS)
    olds = {**inputs, "bound": True, "__provider": OLD_BLOBS[
        "components.peer_relay.PeerRelayServerProvider"]}  # fmt: skip
    news = {**inputs, "bound": None, "__provider": serialize_provider(restore("PeerRelayServer"))}
    with ProviderHost() as host:
        diff = host.diff("id", olds, news, urn=urn)
        assert diff.changes == "some" and diff.replaces == []
        updated = host.update("id", olds, news, urn=urn)
        assert updated.outputs["bound"] is True
        assert updated.outputs["__provider"] == news["__provider"]
        same = {**olds, "__provider": news["__provider"]}
        assert host.diff("id", same, news, urn=urn).changes == "none"


REGION = {"RegionID": 900, "RegionCode": "home", "Nodes": [{"Name": "900a", "RegionID": 900}]}
GRANT = {"src": ["autogroup:member"], "dst": ["tag:relay"], "app": {"tailscale.com/cap/relay": []}}
#: A deployed resource's inputs (echoed in its outputs), per stable name.
DEPLOYED: dict[str, dict[str, Any]] = {
    "PeerRelayServer": {
        "docker_host": "ssh://relay@home.test", "socket": "/run/tailscale.sock", "port": 40000,
        "static_endpoints": [],
    },
    "RelayHealthGate": {
        "mode": "enforce", "healthy": True, "diagnosis": None, "certificate_days_left": 80,
        "checked_at": "2026-12-06T10:00:00Z", "drained": False, "published": True,
        "credentials": True, "passed": True,
    },
    "TailnetDerpRegion": {
        "region": REGION, "healthy": True, "omit_default_regions": False, "adopt_region": False,
        "published": True, "drained": False,
    },
    "HeadscaleDerpRegion": {
        "region": REGION, "healthy": True, "adopt_region": False, "host": "unix:///",
        "derp_file": "/etc/headscale/derp.yaml", "reload": [], "debug_address": "127.0.0.1:9090",
        "published": True, "drained": False,
    },
    "TailnetPeerRelayGrant": {"region_id": 900, "grant": GRANT, "relay_ips": ["100.64.0.1"]},
    "HeadscalePeerRelayGrant": {
        "region_id": 900, "grant": GRANT, "relay_ips": ["100.64.0.1"], "host": "unix:///",
        "policy_file": "/etc/headscale/policy.hujson", "reload": ["true"],
        "debug_address": "127.0.0.1:9090",
    },
}  # fmt: skip
OTHER_REGION = {**REGION, "RegionID": 901, "Nodes": [{"Name": "901a", "RegionID": 901}]}
#: (stable name, what the run before left, what this run sends) → (changes, replaces, the old
#: resource deleted first). What each provider owns decides what replaces it: a region or grant
#: names one entry of one file (the old one is withdrawn first, or both stacks would own it);
#: the peer relay's pref lives on a host (the new host's is set before the old one's is cleared).
DIFFS = [
    ("PeerRelayServer", {}, {"docker_host": "ssh://relay@office.test"},
     ("some", ["docker_host"], False)),
    ("PeerRelayServer", {}, {"port": 40001}, ("some", [], False)),
    ("PeerRelayServer", {}, {"port": UNKNOWN}, ("some", [], False)),
    ("RelayHealthGate", {}, {}, ("none", [], False)),
    ("RelayHealthGate", {"passed": False}, {}, ("some", [], False)),  # a failed gate judges again
    ("TailnetDerpRegion", {}, {}, ("none", [], False)),
    ("TailnetDerpRegion", {}, {"region": OTHER_REGION}, ("some", ["region"], True)),
    ("TailnetDerpRegion", {}, {"healthy": False}, ("some", [], False)),
    # A published region runs again on every unhealthy run (a hand-removed drain flag comes back);
    # one never published has nothing to drain.
    ("TailnetDerpRegion", {"healthy": False}, {"healthy": False}, ("some", [], False)),
    ("TailnetDerpRegion", {"healthy": False, "published": False}, {"healthy": False},
     ("none", [], False)),
    ("TailnetDerpRegion", {}, {"region": UNKNOWN}, ("some", [], False)),
    ("HeadscaleDerpRegion", {}, {"derp_file": "/etc/headscale/other.yaml"},
     ("some", ["derp_file"], True)),
    ("HeadscaleDerpRegion", {}, {"host": "ssh://hs@hs.test", "region": OTHER_REGION},
     ("some", ["host", "region"], True)),
    ("HeadscaleDerpRegion", {"healthy": False}, {"healthy": False}, ("some", [], False)),
    ("HeadscaleDerpRegion", {}, {"reload": ["true"]}, ("some", [], False)),
    ("TailnetPeerRelayGrant", {}, {"region_id": 901}, ("some", ["region_id"], True)),
    ("TailnetPeerRelayGrant", {}, {"relay_ips": ["100.64.0.2"]}, ("some", [], False)),
    ("HeadscalePeerRelayGrant", {}, {"policy_file": "/etc/headscale/acl.hujson"},
     ("some", ["policy_file"], True)),
    ("HeadscalePeerRelayGrant", {}, {"reload": ["kill", "-HUP", "1"]}, ("some", [], False)),
]  # fmt: skip


# Each provider's diff through the real provider process: what changes, what replaces the
# resource and whether the old one is deleted first, and when a provider runs again with
# unchanged inputs.
def test_each_providers_diff() -> None:
    with ProviderHost() as host:
        for name, old, new, expected in DIFFS:
            reference = serialize_provider(restore(name))
            olds = {**DEPLOYED[name], **old, "__provider": reference}
            news = {**DEPLOYED[name], **new, "__provider": reference}
            reply = host.diff("id", olds, news)
            got = (reply.changes, reply.replaces, reply.delete_before_replace)
            assert got == expected, (name, old, new)


# Both control planes' grant providers refuse a grant without src or dst before any write, and
# leave an unknown one (preview) to `up`.
@pytest.mark.parametrize("name", ["TailnetPeerRelayGrant", "HeadscalePeerRelayGrant"])
def test_grant_needs_src_and_dst(name: str) -> None:
    reference = serialize_provider(restore(name))
    deployed = {**DEPLOYED[name], "__provider": reference}
    with ProviderHost() as host:
        assert host.check("", {}, deployed).failures == []
        no_dst = {**deployed, "grant": {"src": ["autogroup:member"]}}
        assert host.check("", {}, no_dst).failures == [("grant", "needs src and dst")]
        assert host.check("", {}, {**deployed, "grant": UNKNOWN}).failures == []


def _fake_main(real: Any) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="pulumi.dynamic.__main__")  # type: ignore[assignment]
    main.traceback = real  # type: ignore[attr-defined]
    return main


# In the dynamic-provider process a HomeDerpError renders as its message alone; any other
# exception keeps its traceback; other processes are left alone.
def test_readable_errors() -> None:
    main = _fake_main(traceback)
    assert readable_errors(main) is True and readable_errors(main) is True
    shim = main.traceback  # type: ignore[attr-defined]
    try:
        raise HomeDerpError("relay derp.test failed 2 of 11 checks")
    except HomeDerpError:
        assert shim.format_exc() == "relay derp.test failed 2 of 11 checks"
    try:
        raise KeyError("bug")
    except KeyError:
        text = shim.format_exc()
    assert text.startswith("Traceback (most recent call last):") and "KeyError" in text
    assert readable_errors(types.ModuleType("__main__")) is False
    assert dynamic_provider.readable_errors() is False  # pytest is not the provider process
