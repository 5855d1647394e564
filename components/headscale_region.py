"""The relay's region in headscale's DERP map file: published, drained, restored, withdrawn.

The headscale counterpart of ``components/tailnet.py``'s ``TailnetDerpRegion``, with the same
promise (docs/architecture.md, "Health"): a healthy relay is published; a published relay that
fails is drained (``nomeasurenohome: true``, docs/upstream/derpmap.md#no-measure-no-home); a
drained relay that passes again is restored; a relay that was never published and fails is not
written at all; ``healthy`` None (no verdict) leaves the region as it is; destroy withdraws it.

Each write is a read-modify-write of the file on the headscale host (``components/headscale.py``:
checksum precondition, temp file and rename), touching only our entry
(``components/headscale_derpmap.py``). After a write headscale is made to load the file — the
user's ``headscaleReload`` command, or headscale's own re-read every ``derp.update_frequency`` —
and ``/debug/derp`` must show the region as written (or gone) before the resource reports
success (docs/upstream/headscale.md#derp-refresh, #debug-derp).

The provider is stored in the stack state under its stable name ``HeadscaleDerpRegion``
(components/dynamic_provider.py: moving the class is one line there). It holds no credentials:
the headscale host is reached through ssh's own configuration, like the relay host.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components import headscale_derpmap as yamlmap
from components import policy_entries
from components.dynamic_provider import stored_outputs
from components.errors import HomeDerpError
from components.headscale import (
    MAX_REFRESH_SECONDS,
    REFRESH_MARGIN_SECONDS,
    RELOAD_WAIT_SECONDS,
    FileChanged,
    HeadscaleError,
    HeadscaleHost,
    expected_nodes,
    rewrite_file,
    wait_served,
)
from components.host import HostReadError
from components.policy_entries import RegionProvider
from components.wire import is_unknown, plain

__all__ = [
    "FileRegionState",
    "HeadscaleDerpRegion",
    "HeadscaleDerpRegionProvider",
    "HeadscaleRegionError",
    "edit_file_region",
]

MAX_ATTEMPTS: Final = 5
"""Read-modify-write rounds before giving up on a file that keeps changing."""
REGION_INPUTS: Final = ("region", "healthy", "adopt_region")
TARGET_INPUTS: Final = ("host", "derp_file")
OTHER_INPUTS: Final = ("reload", "debug_address", "refresh_seconds")


class HeadscaleRegionError(HomeDerpError):
    """A DERP map file operation failed; the message is what `pulumi up` shows the user."""


@dataclass(frozen=True)
class FileRegionState:
    """What our region is in the file after an edit."""

    published: bool
    drained: bool
    created_regions_key: bool
    """This stack added the file's ``regions:`` key (the last one out removes it)."""
    note: str | None = None


def edit_file_region(
    text: str,
    region_id: int,
    region: Mapping[str, Any],
    *,
    healthy: bool | None,
    was: FileRegionState,
    adopt: bool,
) -> tuple[str, FileRegionState]:
    """The file after following the verdict (``region`` in YAML spelling), and the new state.

    Raises :class:`components.headscale_derpmap.DerpFileError` for a file that is not a DERP map.
    """
    live = yamlmap.find_region(text, region_id)
    foreign = live is not None and yamlmap.without_drain(live) != dict(region)
    if not was.published and live is not None and not foreign:
        # Exactly our region is ours even without state: a write whose confirmation (or run)
        # failed after it landed. It is drained, restored or withdrawn like any region we
        # published, as in the tailnet policy (tailnet.edit_region).
        was = FileRegionState(True, yamlmap.region_drained(live), was.created_regions_key)
    if not was.published and foreign and not adopt:
        raise HeadscaleRegionError(
            f"the DERP map file already has region {region_id} and this stack did not write "
            f"it: {live}. Pick another home-derp:regionId, remove that region from the file, "
            "or take it over with `pulumi config set home-derp:adoptRegion true`."
        )
    keep = FileRegionState(was.published, was.drained, was.created_regions_key)
    if healthy is None:
        note = f"no verdict on the relay: region {region_id} was left as it is"
        return text, FileRegionState(keep.published, keep.drained, keep.created_regions_key, note)
    if not healthy:
        if not was.published:
            return text, FileRegionState(False, False, was.created_regions_key)
        if live is None:
            return text, FileRegionState(
                False,
                False,
                was.created_regions_key,
                note=f"region {region_id} is no longer in the file (removed by hand?): there is "
                "nothing to drain; it is published again once the relay is healthy",
            )
        drained = yamlmap.set_region(text, region_id, yamlmap.drained(region))
        return drained, FileRegionState(True, True, was.created_regions_key)
    created = was.created_regions_key or yamlmap.created_regions_key(text)
    return yamlmap.set_region(text, region_id, region), FileRegionState(True, False, created)


def _note(message: str) -> None:
    # The provider process has no engine connection: stderr is what the CLI shows.
    print(f"home-derp headscale: {message}", file=sys.stderr, flush=True)


def _region_id(region: Any) -> int:
    return policy_entries.region_id(region, HeadscaleRegionError)


def _was(props: Mapping[str, Any]) -> FileRegionState:
    return FileRegionState(
        published=bool(props.get("published")),
        drained=bool(props.get("drained")),
        created_regions_key=bool(props.get("created_regions_key")),
    )


class HeadscaleDerpRegionProvider(RegionProvider):
    """CRUD for our region in headscale's DERP map file; see the module docstring (the base:
    components/policy_entries.py)."""

    NAME = "HeadscaleDerpRegion"
    INPUT_KEYS = (*REGION_INPUTS, *TARGET_INPUTS, "reload", "debug_address")
    REPLACE_KEYS = TARGET_INPUTS  # another file: ours in the old one is withdrawn first

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        region = news.get("region")
        if not is_unknown(region):
            try:
                _region_id(plain(region))
            except HeadscaleRegionError as exc:
                failures.append(pulumi.dynamic.CheckFailure("region", str(exc)))
        return pulumi.dynamic.CheckResult(news, failures)

    # -- the file

    def _host(self, props: Mapping[str, Any]) -> HeadscaleHost:
        return HeadscaleHost(str(props["host"]))

    def _rewrite(
        self, host: HeadscaleHost, path: str, mutate: Any
    ) -> tuple[bool, FileRegionState | None]:
        """Read, mutate, write with the checksum precondition; (written, mutate's state). A file
        that does not exist yet reads as empty."""
        try:
            before, after, state = rewrite_file(
                host, path, mutate, missing=lambda: "", attempts=MAX_ATTEMPTS
            )
        except FileChanged:
            raise HeadscaleRegionError(
                f"{path} changed while we were writing it, {MAX_ATTEMPTS} times in a row; "
                "something keeps editing it: retry `pulumi up` when the other editor is done. "
                "Nothing was written."
            ) from None
        except yamlmap.DerpFileError as exc:
            raise HeadscaleRegionError(f"cannot edit {path}: {exc}") from None
        except (HeadscaleError, HostReadError) as exc:
            raise HeadscaleRegionError(str(exc)) from None
        return after != before, state

    def _confirm(
        self,
        host: HeadscaleHost,
        props: Mapping[str, Any],
        region_id: int,
        expected: list[tuple[str, str, int, int]] | None,
        *,
        flag_only: bool,
        written_at: float,
    ) -> str:
        """Make headscale load the file and wait until it serves what we wrote."""
        reload = [str(a) for a in plain(props.get("reload")) or []]
        address = str(props.get("debug_address"))
        every = props.get("refresh_seconds")
        try:
            if reload:
                host.run_reload(reload)
                within = RELOAD_WAIT_SECONDS
            else:
                within = float(every or MAX_REFRESH_SECONDS) + REFRESH_MARGIN_SECONDS
            seen, last = wait_served(host, address, region_id, expected, within=within)
        except (HeadscaleError, HostReadError) as exc:
            raise HeadscaleRegionError(str(exc)) from None
        if not seen:
            want = "gone" if expected is None else f"served with nodes {expected}"
            raise HeadscaleRegionError(
                f"region {region_id} was written to {props.get('derp_file')}, but headscale "
                f"still does not show it {want} after {within:.0f}s: {last}. Check that the file "
                "is in derp.paths (python -m components.doctor), that no later derp.paths file "
                "or URL defines the same region, and headscale's log"
            )
        if flag_only and not reload:
            # /debug/derp does not show NoMeasureNoHome: wait until headscale's next re-read
            # has certainly happened (docs/upstream/headscale.md#debug-derp).
            rest = written_at + float(every or MAX_REFRESH_SECONDS) + REFRESH_MARGIN_SECONDS
            time.sleep(max(0.0, rest - time.monotonic()))
            last += (
                f"; the drain flag is assumed served after headscale's re-read (every {every}s): "
                "/debug/derp does not show it, so it is not confirmed"
            )
        return last

    def _apply(self, props: Mapping[str, Any], was: FileRegionState) -> dict[str, Any]:
        inputs = {k: plain(props.get(k)) for k in (*REGION_INPUTS, *TARGET_INPUTS, *OTHER_INPUTS)}
        region = dict(inputs["region"])
        region_id = _region_id(region)
        wanted = yamlmap.yaml_keys(region)
        host, path = self._host(inputs), str(inputs["derp_file"])

        def mutate(text: str) -> tuple[str, FileRegionState]:
            return edit_file_region(
                text,
                region_id,
                wanted,
                healthy=inputs["healthy"],
                was=was,
                adopt=bool(inputs["adopt_region"]),
            )

        started = time.monotonic()
        written, state = self._rewrite(host, path, mutate)
        assert state is not None
        if state.note:
            _note(state.note)
        served = props.get("served") if not written else None
        if written:
            expected = expected_nodes(wanted) if state.published else None
            flag_only = was.published and state.published and was.drained != state.drained
            served = self._confirm(
                host, inputs, region_id, expected, flag_only=flag_only, written_at=started
            )
        transition = policy_entries.drain_note(
            region_id, was, state, flag="nomeasurenohome", where=f" in {path}"
        )
        if transition:
            _note(transition)
        return {
            **inputs,
            "published": state.published,
            "drained": state.drained,
            "created_regions_key": state.created_regions_key,
            "served": served,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props, FileRegionState(False, False, False))
        return pulumi.dynamic.CreateResult(
            f"{outs['host']}{outs['derp_file']}#{_region_id(outs['region'])}", outs
        )

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(
            self._apply({**news, "served": olds.get("served")}, _was(olds))
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        was = _was(props)
        if not was.published:
            return  # nothing of ours is in the file
        region_id = _region_id(plain(props.get("region")))
        host, path = self._host(props), str(props.get("derp_file"))

        def mutate(text: str) -> tuple[str, FileRegionState]:
            new = yamlmap.remove_region(
                text, region_id, remove_empty_regions=was.created_regions_key
            )
            return new, FileRegionState(False, False, False)

        written, _ = self._rewrite(host, path, mutate)
        if written:
            self._confirm(host, props, region_id, None, flag_only=False, written_at=0.0)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        state = stored_outputs(props)
        if not _was(props).published:
            return pulumi.dynamic.ReadResult(id_, state)
        region_id = _region_id(plain(props.get("region")))
        try:
            current = self._host(props).read_file(str(props.get("derp_file")))
            live = yamlmap.find_region(current.text or "", region_id)
        except (HeadscaleError, HostReadError, yamlmap.DerpFileError) as exc:
            raise HeadscaleRegionError(f"cannot read the DERP map file: {exc}") from None
        if live is None:
            return pulumi.dynamic.ReadResult(None, {})
        return pulumi.dynamic.ReadResult(id_, {**state, "drained": yamlmap.region_drained(live)})


class HeadscaleDerpRegion(pulumi.dynamic.Resource, module="homederp", name="HeadscaleDerpRegion"):
    """This relay's region in headscale's DERP map file (published, drained, withdrawn)."""

    region: pulumi.Output[dict[str, Any]]
    """The region (policy spelling; written in headscale's lower-case YAML spelling)."""
    healthy: pulumi.Output[bool | None]
    adopt_region: pulumi.Output[bool]
    host: pulumi.Output[str]
    """The headscale host's channel (``unix://`` or ``ssh://``)."""
    derp_file: pulumi.Output[str]
    reload: pulumi.Output[list[str]]
    debug_address: pulumi.Output[str]
    refresh_seconds: pulumi.Output[float | None]
    published: pulumi.Output[bool]
    drained: pulumi.Output[bool]
    created_regions_key: pulumi.Output[bool]
    served: pulumi.Output[str | None]
    """What ``/debug/derp`` showed after the last write."""

    def __init__(
        self,
        resource_name: str,
        *,
        region: pulumi.Input[Mapping[str, Any]],
        host: pulumi.Input[str],
        derp_file: pulumi.Input[str],
        debug_address: pulumi.Input[str],
        reload: pulumi.Input[list[str]] | None = None,
        refresh_seconds: pulumi.Input[float | None] = None,
        healthy: pulumi.Input[bool | None] = True,
        adopt_region: pulumi.Input[bool] = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "region": region,
            "healthy": healthy,
            "adopt_region": adopt_region,
            "host": host,
            "derp_file": derp_file,
            "reload": reload or [],
            "debug_address": debug_address,
            "refresh_seconds": refresh_seconds,
            "published": None,
            "drained": None,
            "created_regions_key": None,
            "served": None,
        }
        super().__init__(HeadscaleDerpRegionProvider(), resource_name, props, opts)
